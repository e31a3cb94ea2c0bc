<?php
/**
 * Sending an event to hookpump, and the outbox that keeps it when hookpump cannot take it.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * What hookpump_send() does. An event is sent at once with a short timeout; if hookpump cannot be
 * reached, answers 5xx/429, or refuses the key (401/403: a setting to fix, not a bad event), it is
 * kept in the outbox and sent later: after the next successful send, by WP-Cron, or by
 * `wp hookpump flush`. Each event carries an Idempotency-Key, so sending it again never makes a
 * second message.
 *
 * A site pays at most one timeout for hookpump: once a send times out or cannot connect, the rest
 * of that request's events, and every event for the next UNREACHABLE_SECONDS, go straight to the
 * outbox. The events of the site's own rules are sent at the end of the request, after the
 * response has gone to the visitor where the server allows it (fastcgi_finish_request).
 */
final class Hookpump_Sender {

	/** The WP-Cron hook that flushes the outbox. */
	const CRON_HOOK = 'hookpump_flush';

	/** Rows sent per flush batch. */
	const BATCH = 25;

	/** Seconds one flush may spend before leaving the rest for the next one. */
	const FLUSH_BUDGET_SECONDS = 20;

	/** At the end of a page request a flush sends at most this many, within this many seconds. */
	const SHUTDOWN_ROWS    = 10;
	const SHUTDOWN_SECONDS = 5;

	/** Event types hookpump accepts (openapi.yaml, EventType). */
	const EVENT_TYPE_PATTERN = '/^[A-Za-z0-9_.:-]{1,128}$/';

	/**
	 * Seconds after a timeout or a refused connection during which events go straight to the
	 * outbox (WP-Cron's flush still tries: it is what finds hookpump back).
	 */
	const UNREACHABLE_SECONDS = 60;

	/** The transient that marks hookpump as unreachable; it holds the error. */
	const UNREACHABLE_MARK = 'hookpump_unreachable';

	/** Whether the end-of-request work is already registered. */
	private static bool $shutdown_registered = false;

	/** Whether a send in this request succeeded (then the outbox is flushed at its end). */
	private static bool $sent_in_request = false;

	/** Why hookpump is taken as unreachable for the rest of this request ('' while it is not). */
	private static string $unreachable = '';

	/**
	 * Events of the site's rules waiting for the end of the request.
	 *
	 * @var array<int, array{0: string, 1: array<mixed>, 2: array<string, mixed>}>
	 */
	private static array $deferred = array();

	/**
	 * See hookpump_send().
	 *
	 * @param string               $event_type The event type, e.g. post.published.
	 * @param array<mixed>         $payload    JSON-encodable payload.
	 * @param array<string, mixed> $args       object, idempotency_key, endpoint_ids, queue.
	 * @return string|WP_Error The message id, or why there is none.
	 */
	public static function send( string $event_type, array $payload, array $args = array() ): string|WP_Error {
		$args = wp_parse_args(
			$args,
			array(
				'object'          => '',
				'idempotency_key' => '',
				'endpoint_ids'    => null,
				'queue'           => true,
			)
		);
		if ( ! preg_match( self::EVENT_TYPE_PATTERN, $event_type ) ) {
			return new WP_Error(
				'hookpump_invalid_event_type',
				/* translators: %s: the event type given */
				sprintf( __( 'Not a valid hookpump event type: "%s" (letters, digits and _ . : - only, at most 128).', 'hookpump' ), $event_type )
			);
		}
		$message = array(
			'event_type' => $event_type,
			'payload'    => $payload,
		);
		if ( is_array( $args['endpoint_ids'] ) && $args['endpoint_ids'] ) {
			$message['endpoint_ids'] = array_values( array_map( 'strval', $args['endpoint_ids'] ) );
		}
		$key = '' !== (string) $args['idempotency_key']
			? (string) $args['idempotency_key']
			: self::idempotency_key( $event_type, $payload, (string) $args['object'] );

		$unreachable = self::unreachable_reason();
		$answer      = '' !== $unreachable
			? new WP_Error( 'hookpump_unreachable', $unreachable, array( 'status' => 0 ) )
			: self::deliver( Hookpump_Client::for_sending(), $message, $key );
		if ( is_string( $answer ) ) {
			return $answer;
		}
		if ( ! $args['queue'] || ! self::is_worth_keeping( $answer ) ) {
			return $answer;
		}
		if ( ! Hookpump_Outbox::add( $message, $key, $answer->get_error_message() ) ) {
			return new WP_Error( 'hookpump_outbox_failed', __( 'hookpump could not take the event and it could not be stored for later.', 'hookpump' ), $answer->get_error_data() );
		}
		return new WP_Error(
			'hookpump_queued',
			/* translators: %s: why the event could not be sent now */
			sprintf( __( 'The event is kept and will be sent later: %s', 'hookpump' ), $answer->get_error_message() ),
			$answer->get_error_data()
		);
	}

	/**
	 * Sends an event at the end of the request (the events of the site's rules: nothing waits on
	 * their message id, so the visitor need not wait on hookpump).
	 *
	 * @param string               $event_type The event type.
	 * @param array<mixed>         $payload    JSON-encodable payload.
	 * @param array<string, mixed> $args       As for send().
	 */
	public static function send_later( string $event_type, array $payload, array $args = array() ): void {
		self::$deferred[] = array( $event_type, $payload, $args );
		self::register_shutdown();
	}

	/**
	 * One POST /v1/messages: the message id, or the error (recorded, and remembered for a while when
	 * hookpump could not be reached). A success without a message id is not one: whatever answered
	 * is not hookpump.
	 *
	 * @param Hookpump_Client      $client  The sending client.
	 * @param array<string, mixed> $message The MessageCreate body.
	 * @param string               $key     Its Idempotency-Key.
	 * @return string|WP_Error
	 */
	private static function deliver( Hookpump_Client $client, array $message, string $key ): string|WP_Error {
		$answer = $client->send_message( $message, $key );
		if ( ! is_wp_error( $answer ) ) {
			$id = $answer['id'] ?? null;
			if ( is_string( $id ) && str_starts_with( $id, 'msg_' ) ) {
				self::note_success();
				return $id;
			}
			$answer = new WP_Error(
				'hookpump_not_hookpump',
				__( 'The hookpump URL answered, but not as hookpump does (no message id): check the URL on Settings → hookpump.', 'hookpump' ),
				array( 'status' => 200 )
			);
		}
		Hookpump_Options::record_error( $answer->get_error_message() );
		if ( 0 === Hookpump_Client::status_of( $answer ) && 'hookpump_not_configured' !== $answer->get_error_code() ) {
			self::mark_unreachable( $answer->get_error_message() );
		}
		return $answer;
	}

	/**
	 * A send went through: hookpump is reachable (whatever an earlier request found), a past error
	 * no longer stands, and the outbox is flushed at the end of the request.
	 */
	private static function note_success(): void {
		if ( ! self::$sent_in_request ) {
			self::$sent_in_request = true;
			delete_transient( self::UNREACHABLE_MARK );
			Hookpump_Options::clear_error();
			self::register_shutdown();
		}
	}

	/**
	 * hookpump timed out or refused the connection: the rest of this request, and other requests
	 * for a while, do not wait on it again.
	 *
	 * @param string $error Why.
	 */
	private static function mark_unreachable( string $error ): void {
		self::$unreachable = $error;
		set_transient( self::UNREACHABLE_MARK, $error, self::UNREACHABLE_SECONDS );
	}

	/** Why hookpump is taken as unreachable now, or '' when it is worth trying. */
	private static function unreachable_reason(): string {
		if ( '' !== self::$unreachable ) {
			return self::$unreachable;
		}
		$marked = get_transient( self::UNREACHABLE_MARK );
		if ( is_string( $marked ) && '' !== $marked ) {
			self::$unreachable = $marked;
		}
		return self::$unreachable;
	}

	/** The end of the request: answer the visitor first, then send what waits. */
	private static function register_shutdown(): void {
		if ( self::$shutdown_registered ) {
			return;
		}
		self::$shutdown_registered = true;
		add_action( 'shutdown', array( self::class, 'at_shutdown' ), 20 );
	}

	/**
	 * The end of a page request: the response goes to the visitor (where the server allows it),
	 * then the deferred events are sent, then, if hookpump took something, a small flush.
	 */
	public static function at_shutdown(): void {
		if ( self::$deferred && function_exists( 'fastcgi_finish_request' ) ) {
			fastcgi_finish_request();
		}
		while ( self::$deferred ) {
			$event = array_shift( self::$deferred );
			self::send( $event[0], $event[1], $event[2] );
		}
		if ( self::$sent_in_request && '' === self::$unreachable && Hookpump_Outbox::has_pending() ) {
			self::flush( self::SHUTDOWN_ROWS, self::SHUTDOWN_SECONDS );
		}
	}

	/**
	 * The Idempotency-Key of an event: the site, the event type, the object it is about and a digest
	 * of its payload. The same hook fired twice for the same state of an object gives the same key
	 * (one message); a real change of the object changes the payload and so the key.
	 *
	 * @param string       $event_type The event type.
	 * @param array<mixed> $payload    The payload.
	 * @param string       $object     What it is about, e.g. post:42 ('' for none).
	 */
	public static function idempotency_key( string $event_type, array $payload, string $object ): string {
		$digest = substr( hash( 'sha256', (string) wp_json_encode( $payload ) ), 0, 16 );
		$parts  = array_filter( array( 'wp', Hookpump_Options::site_id(), $event_type, $object, $digest ), 'strlen' );
		$key    = implode( ':', $parts );
		// hookpump takes 1-255 visible ASCII characters; anything else is hashed into that shape.
		if ( strlen( $key ) > 255 || ! preg_match( '/^[\x21-\x7e]+$/', $key ) ) {
			$key = 'wp:' . Hookpump_Options::site_id() . ':' . hash( 'sha256', $key );
		}
		return $key;
	}

	/**
	 * Sends what the outbox holds, oldest first, until it is empty, hookpump fails, or a limit is
	 * reached.
	 *
	 * @param int $max_rows Most rows to send.
	 * @param int $budget   Seconds to spend at most (a batch under way is finished).
	 * @return array{sent: int, rejected: int, failed: int}
	 */
	public static function flush( int $max_rows = PHP_INT_MAX, int $budget = self::FLUSH_BUDGET_SECONDS ): array {
		$result = array(
			'sent'     => 0,
			'rejected' => 0,
			'failed'   => 0,
		);
		$client = Hookpump_Client::for_sending();
		if ( ! $client->is_configured() ) {
			return $result;
		}
		$deadline = microtime( true ) + $budget;
		while ( microtime( true ) < $deadline && $max_rows > 0 ) {
			$rows      = Hookpump_Outbox::claim( min( self::BATCH, $max_rows ) );
			$max_rows -= count( $rows );
			if ( ! $rows ) {
				break;
			}
			foreach ( $rows as $index => $row ) {
				$answer = self::deliver( $client, (array) json_decode( $row->message, true ), $row->idempotency_key );
				if ( ! is_wp_error( $answer ) ) {
					Hookpump_Outbox::delete( (int) $row->id );
					++$result['sent'];
				} elseif ( self::is_worth_keeping( $answer ) ) {
					// hookpump is down again: leave this row and the rest for the next flush.
					foreach ( array_slice( $rows, $index ) as $left ) {
						Hookpump_Outbox::release( (int) $left->id, $answer->get_error_message(), $left === $row );
					}
					++$result['failed'];
					return $result;
				} else {
					Hookpump_Outbox::reject( (int) $row->id, $answer->get_error_message() );
					++$result['rejected'];
				}
			}
		}
		return $result;
	}

	/** WP-Cron's entry point: the outbox is kept within its bounds, then flushed. */
	public static function flush_quietly(): void {
		Hookpump_Outbox::prune();
		self::flush();
	}

	/**
	 * Whether an error is hookpump's (or the settings') rather than the event's: then the event is
	 * kept and sent again; a 4xx about the event itself (400, 409, 413, 422) would fail again.
	 *
	 * @param WP_Error $error An error from Hookpump_Client.
	 */
	public static function is_worth_keeping( WP_Error $error ): bool {
		if ( in_array( $error->get_error_code(), array( 'hookpump_not_configured', 'hookpump_not_hookpump' ), true ) ) {
			return true;
		}
		$status = Hookpump_Client::status_of( $error );
		return 0 === $status || in_array( $status, array( 401, 403, 404, 408, 429 ), true ) || $status >= 500;
	}
}
