<?php
/**
 * Event rules: which WordPress actions become hookpump events, and what each event carries.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * A rule is an id => array( label, hook, accepted_args, callback ) where the callback gets the
 * hook's arguments and returns null (nothing to send) or array( event_type, payload, object ).
 * The site owner ticks rules on the settings page; other plugins add theirs through the
 * `hookpump_events` filter.
 */
final class Hookpump_Event_Rules {

	/**
	 * Every rule on offer: the core ones, WooCommerce's when it is active, and other plugins'.
	 *
	 * @return array<string, array{label: string, hook: string, accepted_args: int, callback: callable, priority?: int}>
	 */
	public static function all(): array {
		$rules = self::core_rules();
		if ( class_exists( 'WooCommerce' ) ) {
			$rules += self::woocommerce_rules();
		}
		/**
		 * Filters the event rules offered on Settings → hookpump.
		 *
		 * @param array $rules id => array( 'label', 'hook', 'accepted_args', 'callback' ).
		 */
		$rules = apply_filters( 'hookpump_events', $rules );
		return array_filter(
			is_array( $rules ) ? $rules : array(),
			static fn( $rule ) => is_array( $rule ) && isset( $rule['hook'], $rule['callback'] ) && is_callable( $rule['callback'] )
		);
	}

	/** Hooks the rules the site owner enabled. */
	public static function register(): void {
		$enabled = Hookpump_Options::enabled_rules();
		foreach ( self::all() as $id => $rule ) {
			if ( ! in_array( (string) $id, $enabled, true ) ) {
				continue;
			}
			add_action(
				$rule['hook'],
				static function ( ...$hook_args ) use ( $rule ) {
					self::fire( $rule, $hook_args );
				},
				(int) ( $rule['priority'] ?? 10 ),
				(int) ( $rule['accepted_args'] ?? 1 )
			);
		}
	}

	/**
	 * Runs a rule's callback and sends what it returns.
	 *
	 * @param array<string, mixed> $rule      The rule.
	 * @param array<int, mixed>    $hook_args The action's arguments.
	 */
	private static function fire( array $rule, array $hook_args ): void {
		$event = call_user_func_array( $rule['callback'], $hook_args );
		if ( ! is_array( $event ) || empty( $event['event_type'] ) ) {
			return;
		}
		$object = (string) ( $event['object'] ?? '' );
		/**
		 * Filters an event's payload before it is sent.
		 *
		 * @param array  $payload    The payload.
		 * @param string $event_type The event type.
		 * @param string $object     What it is about, e.g. post:42.
		 */
		$data = (array) apply_filters( 'hookpump_payload', (array) ( $event['payload'] ?? array() ), (string) $event['event_type'], $object );
		// The receiver gets only the payload, so it says what happened and where (the Standard
		// Webhooks payload shape, less a timestamp: the webhook-timestamp header carries that, and
		// a timestamp here would give a repeated hook a new Idempotency-Key).
		$payload = array(
			'type' => (string) $event['event_type'],
			'site' => home_url(),
			'data' => $data,
		);
		// Sent at the end of the request: nothing here waits on the message id.
		Hookpump_Sender::send_later( (string) $event['event_type'], $payload, array( 'object' => $object ) );
	}

	/**
	 * The rules for core WordPress actions.
	 *
	 * @return array<string, array{label: string, hook: string, accepted_args: int, callback: callable}>
	 */
	private static function core_rules(): array {
		return array(
			'post_published'  => array(
				'label'         => __( 'A post or page is published (post.published)', 'hookpump' ),
				'hook'          => 'transition_post_status',
				'accepted_args' => 3,
				'callback'      => static function ( $new_status, $old_status, $post ) {
					if ( 'publish' !== $new_status || 'publish' === $old_status || ! self::is_public_post( $post ) ) {
						return null;
					}
					return self::post_event( 'post.published', $post );
				},
			),
			'post_updated'    => array(
				'label'         => __( 'A published post or page is updated (post.updated)', 'hookpump' ),
				'hook'          => 'post_updated',
				'accepted_args' => 3,
				'callback'      => static function ( $post_id, $after, $before ) {
					if ( 'publish' !== $after->post_status || 'publish' !== $before->post_status || ! self::is_public_post( $after ) ) {
						return null;
					}
					return self::post_event( 'post.updated', $after );
				},
			),
			'post_trashed'    => array(
				'label'         => __( 'A post or page is moved to the trash (post.trashed)', 'hookpump' ),
				'hook'          => 'trashed_post',
				'accepted_args' => 1,
				'callback'      => static function ( $post_id ) {
					$post = get_post( $post_id );
					// Only a post the world could see: a trashed draft's title was never public.
					// wp_trash_post() keeps the status it had before in this meta.
					$was_published = 'publish' === get_post_meta( (int) $post_id, '_wp_trash_meta_status', true );
					return $post && $was_published && self::is_public_post( $post ) ? self::post_event( 'post.trashed', $post ) : null;
				},
			),
			'user_registered' => array(
				'label'         => __( 'A user registers (user.registered)', 'hookpump' ),
				'hook'          => 'user_register',
				'accepted_args' => 1,
				'callback'      => static function ( $user_id ) {
					$user = get_userdata( $user_id );
					if ( ! $user ) {
						return null;
					}
					return array(
						'event_type' => 'user.registered',
						'object'     => 'user:' . $user->ID,
						'payload'    => array(
							'id'            => (int) $user->ID,
							'login'         => $user->user_login,
							'email'         => $user->user_email,
							'display_name'  => self::plain_text( $user->display_name ),
							'roles'         => array_values( $user->roles ),
							'registered_at' => self::iso8601( $user->user_registered ),
						),
					);
				},
			),
			'comment_posted'  => array(
				'label'         => __( 'An approved comment is posted (comment.posted)', 'hookpump' ),
				'hook'          => 'wp_insert_comment',
				'accepted_args' => 2,
				'callback'      => static function ( $comment_id, $comment ) {
					// Spam, and comments held for moderation, are not the site's to announce.
					if ( '1' !== (string) $comment->comment_approved ) {
						return null;
					}
					return array(
						'event_type' => 'comment.posted',
						'object'     => 'comment:' . (int) $comment_id,
						'payload'    => array(
							'id'        => (int) $comment_id,
							'post_id'   => (int) $comment->comment_post_ID,
							'author'    => self::plain_text( $comment->comment_author ),
							'content'   => self::plain_text( $comment->comment_content ),
							'approved'  => (string) $comment->comment_approved,
							'type'      => $comment->comment_type ? $comment->comment_type : 'comment',
							'posted_at' => self::iso8601( $comment->comment_date_gmt ),
						),
					);
				},
			),
		);
	}

	/**
	 * The WooCommerce rule, offered when WooCommerce is active.
	 *
	 * @return array<string, array{label: string, hook: string, accepted_args: int, callback: callable}>
	 */
	private static function woocommerce_rules(): array {
		return array(
			'woocommerce_order_status' => array(
				'label'         => __( 'A WooCommerce order changes status (order.status_changed)', 'hookpump' ),
				'hook'          => 'woocommerce_order_status_changed',
				'accepted_args' => 4,
				'callback'      => static function ( $order_id, $from, $to, $order = null ) {
					$payload = array(
						'id'   => (int) $order_id,
						'from' => (string) $from,
						'to'   => (string) $to,
					);
					if ( is_object( $order ) && method_exists( $order, 'get_total' ) ) {
						$payload['total']       = (string) $order->get_total();
						$payload['currency']    = (string) $order->get_currency();
						$payload['customer_id'] = (int) $order->get_customer_id();
					}
					return array(
						'event_type' => 'order.status_changed',
						'object'     => 'order:' . (int) $order_id . ':' . $to,
						'payload'    => $payload,
					);
				},
			),
		);
	}

	/**
	 * A post event.
	 *
	 * @param string  $event_type The event type.
	 * @param WP_Post $post       The post.
	 * @return array{event_type: string, object: string, payload: array<string, mixed>}
	 */
	private static function post_event( string $event_type, WP_Post $post ): array {
		return array(
			'event_type' => $event_type,
			'object'     => 'post:' . $post->ID,
			'payload'    => array(
				'id'           => (int) $post->ID,
				'type'         => $post->post_type,
				'status'       => $post->post_status,
				'title'        => self::plain_text( $post->post_title ),
				'slug'         => $post->post_name,
				'url'          => (string) get_permalink( $post ),
				'author_id'    => (int) $post->post_author,
				'published_at' => self::iso8601( $post->post_date_gmt ),
				'modified_at'  => self::iso8601( $post->post_modified_gmt ),
			),
		);
	}

	/**
	 * Text as a person reads it: no tags, no HTML entities (WordPress stores `&` in a title as
	 * `&amp;`, and its display filters add more, such as `&#8216;` for a quote).
	 *
	 * @param string $text Text as WordPress stores it.
	 */
	private static function plain_text( string $text ): string {
		return html_entity_decode( wp_strip_all_tags( $text ), ENT_QUOTES | ENT_HTML5, 'UTF-8' );
	}

	/**
	 * Whether a post is of a public type and not a revision or autosave.
	 *
	 * @param mixed $post A post, maybe.
	 */
	private static function is_public_post( $post ): bool {
		return $post instanceof WP_Post
			&& ! wp_is_post_revision( $post )
			&& ! wp_is_post_autosave( $post )
			&& in_array( $post->post_type, get_post_types( array( 'public' => true ) ), true );
	}

	/**
	 * A GMT MySQL datetime as RFC 3339, or null for the zero date.
	 *
	 * @param string $gmt A GMT datetime from the database.
	 */
	private static function iso8601( string $gmt ): ?string {
		if ( '' === $gmt || str_starts_with( $gmt, '0000' ) ) {
			return null;
		}
		return gmdate( 'Y-m-d\TH:i:s\Z', (int) strtotime( $gmt . ' UTC' ) );
	}
}
