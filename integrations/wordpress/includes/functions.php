<?php
/**
 * The plugin's public PHP API.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

if ( ! function_exists( 'hookpump_send' ) ) {
	/**
	 * Hands an event to hookpump, which delivers it to every endpoint subscribed to its type.
	 *
	 * The request has a short timeout. If hookpump cannot take the event now (unreachable, 5xx,
	 * 429, key refused, or a server answering that is not hookpump), it is kept in the plugin's
	 * table and sent later; the answer is then a WP_Error with code `hookpump_queued`. For a minute
	 * after a timeout or a refused connection, events are kept at once without trying hookpump. Other errors (an invalid event type, a payload hookpump
	 * refuses) are WP_Errors with the reason and are not kept.
	 *
	 * @param string               $event_type E.g. `order.paid`: letters, digits, `_ . : -`, at most 128.
	 * @param array<mixed>         $payload    Any JSON-encodable data.
	 * @param array<string, mixed> $args {
	 *     Optional.
	 *
	 *     @type string   $object          What the event is about, e.g. `post:42`. Part of the
	 *                                     Idempotency-Key, with the site and the event type.
	 *     @type string   $idempotency_key Your own key instead (1-255 visible ASCII characters).
	 *     @type string[] $endpoint_ids    Send to exactly these endpoints instead of by event type.
	 *     @type bool     $queue           Keep the event for later if hookpump is down. Default true.
	 * }
	 * @return string|WP_Error The hookpump message id (`msg_...`), or why there is none.
	 */
	function hookpump_send( string $event_type, array $payload, array $args = array() ) {
		return Hookpump_Sender::send( $event_type, $payload, $args );
	}
}
