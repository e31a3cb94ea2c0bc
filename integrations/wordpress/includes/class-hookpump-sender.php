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

	/** Whether a flush is already registered for the end of this request. */
	private static bool $shutdown_flush_registered = false;

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

		$answer = Hookpump_Client::for_sending()->send_message( $message, $key );
		if ( ! is_wp_error( $answer ) ) {
			self::flush_at_shutdown_if_pending();
			return (string) ( $answer['id'] ?? '' );
		}
		Hookpump_Options::record_error( $answer->get_error_message() );
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
				$answer = $client->send_message( (array) json_decode( $row->message, true ), $row->idempotency_key );
				if ( ! is_wp_error( $answer ) ) {
					Hookpump_Outbox::delete( (int) $row->id );
					++$result['sent'];
				} elseif ( self::is_worth_keeping( $answer ) ) {
					// hookpump is down again: leave this row and the rest for the next flush.
					Hookpump_Options::record_error( $answer->get_error_message() );
					foreach ( array_slice( $rows, $index ) as $left ) {
						Hookpump_Outbox::release( (int) $left->id, $answer->get_error_message(), $left === $row );
					}
					++$result['failed'];
					return $result;
				} else {
					Hookpump_Options::record_error( $answer->get_error_message() );
					Hookpump_Outbox::reject( (int) $row->id, $answer->get_error_message() );
					++$result['rejected'];
				}
			}
		}
		return $result;
	}

	/** WP-Cron's entry point. */
	public static function flush_quietly(): void {
		self::flush();
	}

	/** The end of a page request: a small flush, so the page is not held up; WP-Cron does the rest. */
	public static function flush_at_shutdown(): void {
		self::flush( self::SHUTDOWN_ROWS, self::SHUTDOWN_SECONDS );
	}

	/**
	 * Whether an error is hookpump's (or the settings') rather than the event's: then the event is
	 * kept and sent again; a 4xx about the event itself (400, 409, 413, 422) would fail again.
	 *
	 * @param WP_Error $error An error from Hookpump_Client.
	 */
	public static function is_worth_keeping( WP_Error $error ): bool {
		if ( 'hookpump_not_configured' === $error->get_error_code() ) {
			return true;
		}
		$status = Hookpump_Client::status_of( $error );
		return 0 === $status || in_array( $status, array( 401, 403, 404, 408, 429 ), true ) || $status >= 500;
	}

	/** After a successful send, hookpump is up: send what waits in the outbox once the page is done. */
	private static function flush_at_shutdown_if_pending(): void {
		if ( self::$shutdown_flush_registered ) {
			return;
		}
		if ( Hookpump_Outbox::has_pending() ) {
			self::$shutdown_flush_registered = true;
			add_action( 'shutdown', array( self::class, 'flush_at_shutdown' ) );
		}
	}
}
