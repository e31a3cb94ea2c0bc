<?php
/**
 * Tools → Webhook deliveries: hookpump's delivery log for the site's endpoints, a delivery's
 * attempts, and a Retry button.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * The deliveries page. It only reads hookpump's monitoring API with the monitoring key and asks
 * for a retry with it (admin scope); it stores nothing of its own.
 */
final class Hookpump_Deliveries_Page {

	const SLUG         = 'hookpump-deliveries';
	const RETRY_ACTION = 'hookpump_retry_delivery';
	const DELIVERY_ID  = '/^dlv_[0-9a-hjkmnp-tv-z]{26}_[1-9][0-9]{0,5}$/';
	const STATUSES     = array( 'pending', 'delivering', 'retrying', 'succeeded', 'failed', 'cancelled' );
	const PAGE_SIZE    = 25;
	const NOTICE_TRANS = 'hookpump_retry_notice_';

	/** Adds the hooks. */
	public static function boot(): void {
		add_action( 'admin_menu', array( self::class, 'add_page' ) );
		add_action( 'admin_post_' . self::RETRY_ACTION, array( self::class, 'retry' ) );
	}

	/** Adds Tools → Webhook deliveries. */
	public static function add_page(): void {
		add_management_page( __( 'Webhook deliveries', 'hookpump' ), __( 'Webhook deliveries', 'hookpump' ), 'manage_options', self::SLUG, array( self::class, 'render' ) );
	}

	/** The page's URL, with query arguments. */
	private static function url( array $args = array() ): string {
		return add_query_arg( array_merge( array( 'page' => self::SLUG ), $args ), admin_url( 'tools.php' ) );
	}

	/** admin-post: retries one delivery, then goes back to where the button was. */
	public static function retry(): void {
		if ( ! current_user_can( 'manage_options' ) ) {
			wp_die( esc_html__( 'You are not allowed to do that.', 'hookpump' ), '', array( 'response' => 403 ) );
		}
		$delivery_id = isset( $_POST['delivery'] ) ? sanitize_text_field( wp_unslash( $_POST['delivery'] ) ) : '';
		check_admin_referer( self::RETRY_ACTION . '_' . $delivery_id );
		if ( ! preg_match( self::DELIVERY_ID, $delivery_id ) ) {
			wp_die( esc_html__( 'Not a delivery id.', 'hookpump' ), '', array( 'response' => 400 ) );
		}
		$client = Hookpump_Client::for_monitoring();
		$answer = self::is_the_sites( $client, $delivery_id ) ? $client->retry_delivery( $delivery_id ) : new WP_Error(
			'hookpump_not_this_sites',
			/* translators: %s: delivery id */
			sprintf( __( 'Delivery %s is not to one of this site\'s endpoints (Settings → hookpump), so it is not retried from here.', 'hookpump' ), $delivery_id )
		);
		if ( is_wp_error( $answer ) ) {
			$notice = array(
				'ok'      => false,
				'message' => 403 === Hookpump_Client::status_of( $answer )
					? __( 'The monitoring key may read but not retry: give it the admin scope.', 'hookpump' )
					: $answer->get_error_message(),
			);
		} else {
			$notice = array(
				'ok'      => true,
				/* translators: %s: delivery id */
				'message' => sprintf( __( 'Delivery %s is queued again.', 'hookpump' ), $delivery_id ),
			);
		}
		set_transient( self::NOTICE_TRANS . get_current_user_id(), $notice, MINUTE_IN_SECONDS );
		$back = isset( $_POST['back'] ) && 'detail' === sanitize_key( wp_unslash( $_POST['back'] ) ) ? array( 'delivery' => $delivery_id ) : array();
		wp_safe_redirect( self::url( $back ) );
		exit;
	}

	/**
	 * Whether a delivery goes to one of the site's endpoints (any, when none are set): the key may
	 * be able to retry every endpoint's deliveries, but this page acts for this site only.
	 *
	 * @param Hookpump_Client $client      Monitoring client.
	 * @param string          $delivery_id The delivery.
	 */
	private static function is_the_sites( Hookpump_Client $client, string $delivery_id ): bool {
		$site_endpoints = Hookpump_Options::endpoint_ids();
		if ( ! $site_endpoints ) {
			return true;
		}
		$detail = $client->get_delivery( $delivery_id );
		return ! is_wp_error( $detail ) && in_array( (string) ( $detail['delivery']['endpoint_id'] ?? '' ), $site_endpoints, true );
	}

	/** Renders the page: the list, or one delivery when `delivery` is given. */
	public static function render(): void {
		if ( ! current_user_can( 'manage_options' ) ) {
			return;
		}
		echo '<div class="wrap"><h1>' . esc_html__( 'Webhook deliveries', 'hookpump' ) . '</h1>';
		$client = Hookpump_Client::for_monitoring();
		if ( ! $client->is_configured() ) {
			echo '<div class="notice notice-warning inline"><p>';
			printf(
				/* translators: %s: link to the settings page */
				esc_html__( 'To see deliveries here, set hookpump\'s URL and a monitoring key (read scope; admin scope too for Retry) on %s.', 'hookpump' ),
				'<a href="' . esc_url( admin_url( 'options-general.php?page=' . Hookpump_Settings_Page::SLUG ) ) . '">' . esc_html__( 'Settings → hookpump', 'hookpump' ) . '</a>'
			);
			echo '</p></div></div>';
			return;
		}
		$notice = get_transient( self::NOTICE_TRANS . get_current_user_id() );
		if ( is_array( $notice ) ) {
			delete_transient( self::NOTICE_TRANS . get_current_user_id() );
			printf( '<div class="notice %s"><p>%s</p></div>', $notice['ok'] ? 'notice-success' : 'notice-error', esc_html( $notice['message'] ) );
		}
		// phpcs:disable WordPress.Security.NonceVerification.Recommended -- read-only filters.
		$delivery_id = isset( $_GET['delivery'] ) ? sanitize_text_field( wp_unslash( $_GET['delivery'] ) ) : '';
		$status      = isset( $_GET['status'] ) ? sanitize_key( wp_unslash( $_GET['status'] ) ) : '';
		$endpoint    = isset( $_GET['endpoint'] ) ? sanitize_text_field( wp_unslash( $_GET['endpoint'] ) ) : '';
		$cursor      = isset( $_GET['cursor'] ) ? sanitize_text_field( wp_unslash( $_GET['cursor'] ) ) : '';
		// phpcs:enable
		if ( '' !== $delivery_id && preg_match( self::DELIVERY_ID, $delivery_id ) ) {
			self::render_detail( $client, $delivery_id );
		} else {
			$status = in_array( $status, self::STATUSES, true ) ? $status : '';
			$cursor = preg_match( self::DELIVERY_ID, $cursor ) ? $cursor : '';
			self::render_list( $client, $status, $endpoint, $cursor );
		}
		echo '</div>';
	}

	/**
	 * One page of the deliveries of the site's endpoints (or of the chosen one), newest first.
	 *
	 * The API's cursor is the last delivery shown and works across endpoints (it is a position in
	 * the log's order, which is the order of delivery ids), so one cursor pages the merged list too.
	 *
	 * @param Hookpump_Client $client   Monitoring client.
	 * @param string          $status   '' or one status.
	 * @param string          $endpoint '' or one of the site's endpoint ids.
	 * @param string          $cursor   '' for the newest, or the last delivery of the page before.
	 */
	private static function render_list( Hookpump_Client $client, string $status, string $endpoint, string $cursor ): void {
		$site_endpoints = Hookpump_Options::endpoint_ids();
		$endpoints      = in_array( $endpoint, $site_endpoints, true ) ? array( $endpoint ) : $site_endpoints;
		if ( ! $site_endpoints ) {
			echo '<p>' . esc_html__( "No endpoints are set as this site's on Settings → hookpump, so deliveries to every endpoint are shown.", 'hookpump' ) . '</p>';
			$endpoints = array( '' );
		}
		$deliveries = array();
		$more       = false;
		foreach ( $endpoints as $id ) {
			$filters = array_filter(
				array(
					'endpoint_id' => $id,
					'status'      => $status,
					'limit'       => self::PAGE_SIZE,
					'cursor'      => $cursor,
				)
			);
			$page = $client->list_deliveries( $filters );
			if ( is_wp_error( $page ) ) {
				echo '<div class="notice notice-error inline"><p>' . esc_html( $page->get_error_message() ) . '</p></div>';
				return;
			}
			$deliveries = array_merge( $deliveries, (array) ( $page['data'] ?? array() ) );
			$more       = $more || ! empty( $page['next_cursor'] );
		}
		// Each endpoint's page is newest first; merged, the newest of them all come first.
		usort( $deliveries, static fn( $a, $b ) => strcmp( (string) $b['id'], (string) $a['id'] ) );
		$more       = $more || count( $deliveries ) > self::PAGE_SIZE;
		$deliveries = array_slice( $deliveries, 0, self::PAGE_SIZE );

		self::render_filters( $status, $endpoint, $site_endpoints );
		if ( ! $deliveries ) {
			echo '<p>' . esc_html__( 'No deliveries match.', 'hookpump' ) . '</p>';
			self::render_paging( $status, $endpoint, $cursor, '' );
			return;
		}
		echo '<table class="widefat striped hookpump-deliveries"><thead><tr>';
		foreach ( array( __( 'Delivery', 'hookpump' ), __( 'Event', 'hookpump' ), __( 'Endpoint', 'hookpump' ), __( 'Status', 'hookpump' ), __( 'Attempts', 'hookpump' ), __( 'Last answer', 'hookpump' ), __( 'Created', 'hookpump' ), '' ) as $heading ) {
			echo '<th scope="col">' . esc_html( $heading ) . '</th>';
		}
		echo '</tr></thead><tbody>';
		foreach ( $deliveries as $delivery ) {
			$id = (string) $delivery['id'];
			echo '<tr data-delivery="' . esc_attr( $id ) . '" data-status="' . esc_attr( (string) $delivery['status'] ) . '">';
			echo '<td><a href="' . esc_url( self::url( array( 'delivery' => $id ) ) ) . '"><code>' . esc_html( $id ) . '</code></a></td>';
			echo '<td>' . esc_html( (string) $delivery['event_type'] ) . '</td>';
			echo '<td><code>' . esc_html( (string) $delivery['endpoint_id'] ) . '</code></td>';
			echo '<td>' . esc_html( (string) $delivery['status'] ) . '</td>';
			echo '<td>' . esc_html( (string) (int) $delivery['attempts'] ) . '</td>';
			echo '<td>' . esc_html( self::last_answer( $delivery ) ) . '</td>';
			echo '<td>' . esc_html( self::local_time( $delivery['created_at'] ?? null ) ) . '</td>';
			echo '<td>';
			self::render_retry_button( $delivery, 'list' );
			echo '</td></tr>';
		}
		echo '</tbody></table>';
		self::render_paging( $status, $endpoint, $cursor, $more ? (string) end( $deliveries )['id'] : '' );
	}

	/**
	 * Links to the newest page and to the next, older one.
	 *
	 * @param string $status   The status filter.
	 * @param string $endpoint The endpoint filter.
	 * @param string $cursor   This page's cursor ('' on the newest page).
	 * @param string $older    The next page's cursor ('' when this is the last page).
	 */
	private static function render_paging( string $status, string $endpoint, string $cursor, string $older ): void {
		$filters = array_filter(
			array(
				'status'   => $status,
				'endpoint' => $endpoint,
			)
		);
		echo '<p class="hookpump-paging">';
		if ( '' !== $cursor ) {
			echo '<a class="button" href="' . esc_url( self::url( $filters ) ) . '">&larr; ' . esc_html__( 'Newest', 'hookpump' ) . '</a> ';
		}
		if ( '' !== $older ) {
			echo '<a class="button hookpump-older" href="' . esc_url( self::url( $filters + array( 'cursor' => $older ) ) ) . '">' . esc_html__( 'Older deliveries', 'hookpump' ) . ' &rarr;</a>';
		}
		echo '</p>';
	}

	/**
	 * An API timestamp (UTC) in the site's time zone and date and time formats.
	 *
	 * @param mixed $timestamp An RFC 3339 timestamp, or null.
	 */
	private static function local_time( $timestamp ): string {
		if ( ! is_string( $timestamp ) || '' === $timestamp ) {
			return '—';
		}
		$seconds = strtotime( $timestamp );
		if ( false === $seconds ) {
			return $timestamp;
		}
		return (string) wp_date( get_option( 'date_format' ) . ' ' . get_option( 'time_format' ), $seconds );
	}

	/**
	 * The status and endpoint filter.
	 *
	 * @param string   $status         Chosen status.
	 * @param string   $endpoint       Chosen endpoint.
	 * @param string[] $site_endpoints The site's endpoints.
	 */
	private static function render_filters( string $status, string $endpoint, array $site_endpoints ): void {
		echo '<form method="get" action="' . esc_url( admin_url( 'tools.php' ) ) . '"><input type="hidden" name="page" value="' . esc_attr( self::SLUG ) . '">';
		echo '<select name="status"><option value="">' . esc_html__( 'Any status', 'hookpump' ) . '</option>';
		foreach ( self::STATUSES as $choice ) {
			echo '<option value="' . esc_attr( $choice ) . '"' . selected( $status, $choice, false ) . '>' . esc_html( $choice ) . '</option>';
		}
		echo '</select> ';
		if ( count( $site_endpoints ) > 1 ) {
			echo '<select name="endpoint"><option value="">' . esc_html__( "All this site's endpoints", 'hookpump' ) . '</option>';
			foreach ( $site_endpoints as $choice ) {
				echo '<option value="' . esc_attr( $choice ) . '"' . selected( $endpoint, $choice, false ) . '>' . esc_html( $choice ) . '</option>';
			}
			echo '</select> ';
		}
		submit_button( __( 'Filter', 'hookpump' ), 'secondary', '', false );
		echo '</form><br>';
	}

	/**
	 * One delivery: its state, every attempt and operator action.
	 *
	 * @param Hookpump_Client $client      Monitoring client.
	 * @param string          $delivery_id The delivery.
	 */
	private static function render_detail( Hookpump_Client $client, string $delivery_id ): void {
		echo '<p><a href="' . esc_url( self::url() ) . '">&larr; ' . esc_html__( 'All deliveries', 'hookpump' ) . '</a></p>';
		$detail = $client->get_delivery( $delivery_id );
		if ( is_wp_error( $detail ) ) {
			echo '<div class="notice notice-error inline"><p>' . esc_html( $detail->get_error_message() ) . '</p></div>';
			return;
		}
		$delivery = (array) $detail['delivery'];
		echo '<h2><code>' . esc_html( $delivery_id ) . '</code></h2><table class="form-table" role="presentation">';
		$facts = array(
			__( 'Event', 'hookpump' )        => (string) $delivery['event_type'],
			__( 'Message', 'hookpump' )      => (string) $delivery['message_id'],
			__( 'Endpoint', 'hookpump' )     => (string) $delivery['endpoint_id'],
			__( 'Status', 'hookpump' )       => (string) $delivery['status'],
			__( 'Next attempt', 'hookpump' ) => self::local_time( $delivery['next_attempt_at'] ?? null ),
			__( 'Last answer', 'hookpump' )  => self::last_answer( $delivery ),
		);
		foreach ( $facts as $label => $value ) {
			echo '<tr><th scope="row">' . esc_html( $label ) . '</th><td>' . esc_html( $value ) . '</td></tr>';
		}
		echo '</table>';
		self::render_retry_button( $delivery, 'detail' );
		echo '<h3>' . esc_html__( 'Attempts', 'hookpump' ) . '</h3><table class="widefat striped hookpump-attempts"><thead><tr>';
		foreach ( array( '#', __( 'Trigger', 'hookpump' ), __( 'Started', 'hookpump' ), __( 'Duration (ms)', 'hookpump' ), __( 'Outcome', 'hookpump' ), __( 'Answer', 'hookpump' ) ) as $heading ) {
			echo '<th scope="col">' . esc_html( $heading ) . '</th>';
		}
		echo '</tr></thead><tbody>';
		foreach ( (array) $detail['attempts'] as $attempt ) {
			$response = is_array( $attempt['response'] ?? null ) ? $attempt['response'] : null;
			$error    = is_array( $attempt['error'] ?? null ) ? $attempt['error'] : null;
			$answer   = $response ? $response['status'] . ' ' . $response['body'] : ( $error ? $error['kind'] . ': ' . $error['message'] : '' );
			echo '<tr data-outcome="' . esc_attr( (string) $attempt['outcome'] ) . '">';
			echo '<td>' . esc_html( (string) (int) $attempt['number'] ) . '</td>';
			echo '<td>' . esc_html( (string) $attempt['trigger'] ) . '</td>';
			echo '<td>' . esc_html( self::local_time( $attempt['started_at'] ?? null ) ) . '</td>';
			echo '<td>' . esc_html( null === $attempt['duration_ms'] ? '' : (string) round( (float) $attempt['duration_ms'] ) ) . '</td>';
			echo '<td>' . esc_html( (string) $attempt['outcome'] ) . '</td>';
			echo '<td><code>' . esc_html( wp_html_excerpt( $answer, 200, '…' ) ) . '</code></td></tr>';
		}
		echo '</tbody></table>';
		if ( ! empty( $detail['actions'] ) ) {
			echo '<h3>' . esc_html__( 'Operator actions', 'hookpump' ) . '</h3><ul>';
			foreach ( (array) $detail['actions'] as $action ) {
				echo '<li>' . esc_html( self::local_time( $action['at'] ) . ' ' . $action['action'] . ' (' . $action['by'] . ')' ) . '</li>';
			}
			echo '</ul>';
		}
	}

	/**
	 * A Retry button: a form to admin-post.php with a nonce for this delivery. Not shown while
	 * the delivery is being sent (hookpump refuses that with 409).
	 *
	 * @param array<string, mixed> $delivery A Delivery.
	 * @param string               $back     Where to come back: list or detail.
	 */
	private static function render_retry_button( array $delivery, string $back ): void {
		if ( 'delivering' === $delivery['status'] ) {
			return;
		}
		$id = (string) $delivery['id'];
		echo '<form method="post" class="hookpump-retry" action="' . esc_url( admin_url( 'admin-post.php' ) ) . '">';
		echo '<input type="hidden" name="action" value="' . esc_attr( self::RETRY_ACTION ) . '">';
		echo '<input type="hidden" name="delivery" value="' . esc_attr( $id ) . '">';
		echo '<input type="hidden" name="back" value="' . esc_attr( $back ) . '">';
		wp_nonce_field( self::RETRY_ACTION . '_' . $id );
		submit_button( __( 'Retry', 'hookpump' ), 'small', 'submit', false );
		echo '</form>';
	}

	/**
	 * The last status code or error of a delivery, in a few words.
	 *
	 * @param array<string, mixed> $delivery A Delivery.
	 */
	private static function last_answer( array $delivery ): string {
		if ( null !== ( $delivery['last_status_code'] ?? null ) ) {
			return (string) $delivery['last_status_code'];
		}
		return (string) ( $delivery['last_error'] ?? '' );
	}
}
