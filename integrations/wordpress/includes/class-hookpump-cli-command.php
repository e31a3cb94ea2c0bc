<?php
/**
 * WP-CLI: `wp hookpump send|status|flush`.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * Sends events to hookpump and manages the outbox.
 */
final class Hookpump_CLI_Command {

	/**
	 * Sends one event.
	 *
	 * ## OPTIONS
	 *
	 * <event_type>
	 * : The event type, e.g. order.paid.
	 *
	 * <payload>
	 * : The payload as a JSON object or array.
	 *
	 * [--object=<object>]
	 * : What the event is about, e.g. post:42 (part of the Idempotency-Key).
	 *
	 * ## EXAMPLES
	 *
	 *     wp hookpump send order.paid '{"id":1}' --object=order:1
	 *
	 * @param array<int, string>    $args       Positional arguments.
	 * @param array<string, string> $assoc_args Options.
	 */
	public function send( array $args, array $assoc_args ): void {
		$payload = json_decode( $args[1], true );
		if ( ! is_array( $payload ) ) {
			WP_CLI::error( 'The payload must be a JSON object or array.' );
		}
		$result = hookpump_send( $args[0], $payload, array( 'object' => $assoc_args['object'] ?? '' ) );
		if ( is_wp_error( $result ) ) {
			if ( 'hookpump_queued' === $result->get_error_code() ) {
				WP_CLI::warning( $result->get_error_message() );
				return;
			}
			WP_CLI::error( $result->get_error_message() );
		}
		WP_CLI::success( $result );
	}

	/**
	 * Shows what waits in the outbox and the last error.
	 *
	 * ## EXAMPLES
	 *
	 *     wp hookpump status
	 *
	 * @param array<int, string>    $args       Unused.
	 * @param array<string, string> $assoc_args Unused.
	 */
	public function status( array $args, array $assoc_args ): void {
		$counts = Hookpump_Outbox::counts();
		$error  = Hookpump_Options::last_error();
		WP_CLI::line( 'url: ' . Hookpump_Options::url() );
		WP_CLI::line( 'pending: ' . $counts[ Hookpump_Outbox::PENDING ] );
		WP_CLI::line( 'rejected: ' . $counts[ Hookpump_Outbox::REJECTED ] );
		$age = Hookpump_Outbox::oldest_pending_age();
		WP_CLI::line( 'oldest pending: ' . ( null === $age ? '-' : $age . ' s' ) );
		WP_CLI::line( 'last error: ' . ( $error ? gmdate( 'c', $error['at'] ) . ' ' . $error['message'] : '-' ) );
	}

	/**
	 * Sends every pending event now.
	 *
	 * ## EXAMPLES
	 *
	 *     wp hookpump flush
	 *
	 * @param array<int, string>    $args       Unused.
	 * @param array<string, string> $assoc_args Unused.
	 */
	public function flush( array $args, array $assoc_args ): void {
		$result = Hookpump_Sender::flush();
		$line   = sprintf( 'sent %d, refused %d, failed %d', $result['sent'], $result['rejected'], $result['failed'] );
		if ( $result['failed'] > 0 ) {
			WP_CLI::error( $line . ': ' . ( Hookpump_Options::last_error()['message'] ?? '' ) );
		}
		WP_CLI::success( $line );
	}
}
