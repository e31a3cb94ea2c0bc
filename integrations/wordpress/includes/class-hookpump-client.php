<?php
/**
 * The one door to hookpump's REST API (openapi.yaml): every request the plugin makes goes through here.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * A small client over the WordPress HTTP API. It answers with the decoded JSON body or a WP_Error
 * whose data carries the HTTP status (0 when hookpump could not be reached) and, for
 * application/problem+json answers, the problem's `detail`.
 */
final class Hookpump_Client {

	/**
	 * Seconds to wait for hookpump: short, since a request pays it at most once (then hookpump is
	 * left alone for a minute, Hookpump_Sender::UNREACHABLE_SECONDS).
	 */
	const DEFAULT_TIMEOUT = 2;

	/**
	 * Constructor.
	 *
	 * @param string $base_url hookpump's URL, e.g. https://hooks.example.com.
	 * @param string $api_key  The API key to send as a Bearer token.
	 * @param int    $timeout  Seconds before giving up.
	 */
	public function __construct(
		private string $base_url,
		private string $api_key,
		private int $timeout = self::DEFAULT_TIMEOUT
	) {
	}

	/** A client with the `send`-scope key. */
	public static function for_sending(): self {
		return new self( Hookpump_Options::url(), Hookpump_Options::send_key() );
	}

	/** A client with the monitoring (read/admin) key. */
	public static function for_monitoring(): self {
		return new self( Hookpump_Options::url(), Hookpump_Options::read_key(), 10 );
	}

	/** Whether both a URL and a key are set. */
	public function is_configured(): bool {
		return '' !== $this->base_url && '' !== $this->api_key;
	}

	/**
	 * POST /v1/messages.
	 *
	 * @param array<string, mixed> $message         event_type, payload and optional endpoint_ids.
	 * @param string               $idempotency_key Makes a repeat answer as the first time.
	 * @return array<string, mixed>|WP_Error The MessageAccepted body.
	 */
	public function send_message( array $message, string $idempotency_key ): array|WP_Error {
		return $this->request( 'POST', '/v1/messages', array(), $message, array( 'Idempotency-Key' => $idempotency_key ) );
	}

	/**
	 * GET /v1/deliveries.
	 *
	 * @param array<string, string|int> $filters endpoint_id, status, limit, cursor.
	 * @return array<string, mixed>|WP_Error A DeliveryPage.
	 */
	public function list_deliveries( array $filters ): array|WP_Error {
		return $this->request( 'GET', '/v1/deliveries', $filters );
	}

	/**
	 * GET /v1/deliveries/{id}.
	 *
	 * @param string $delivery_id The delivery.
	 * @return array<string, mixed>|WP_Error A DeliveryDetail.
	 */
	public function get_delivery( string $delivery_id ): array|WP_Error {
		return $this->request( 'GET', '/v1/deliveries/' . rawurlencode( $delivery_id ) );
	}

	/**
	 * POST /v1/deliveries/{id}/retry (admin scope).
	 *
	 * @param string $delivery_id The delivery.
	 * @return array<string, mixed>|WP_Error The Delivery, queued again.
	 */
	public function retry_delivery( string $delivery_id ): array|WP_Error {
		return $this->request( 'POST', '/v1/deliveries/' . rawurlencode( $delivery_id ) . '/retry' );
	}

	/**
	 * GET /v1/api-keys/me: proves that the URL is hookpump's and returns the key's scopes.
	 *
	 * @return array{version: string, scopes: string[]}|WP_Error
	 */
	public function identify_key(): array|WP_Error {
		$answer = $this->request( 'GET', '/v1/api-keys/me' );
		if ( is_wp_error( $answer ) ) {
			if ( 404 === self::status_of( $answer ) ) {
				return new WP_Error(
					'hookpump_not_hookpump',
					/* translators: %s: the URL */
					sprintf( __( '%s has no /v1/api-keys/me: it is not hookpump (or a hookpump older than this plugin). Enter the root URL of hookpump.', 'hookpump' ), $this->base_url ),
					array( 'status' => 404 )
				);
			}
			return $answer;
		}
		if ( 'hookpump' !== ( $answer['service'] ?? null ) || ! is_array( $answer['key']['scopes'] ?? null ) ) {
			return new WP_Error(
				'hookpump_not_hookpump',
				/* translators: %s: the URL */
				sprintf( __( '%s answered, but not as hookpump does: check that it is hookpump\'s root URL.', 'hookpump' ), $this->base_url ),
				array( 'status' => 200 )
			);
		}
		return array(
			'version' => (string) ( $answer['version'] ?? '' ),
			'scopes'  => array_values( array_map( 'strval', $answer['key']['scopes'] ) ),
		);
	}

	/**
	 * The HTTP status a WP_Error from this client carries (0: no answer came).
	 *
	 * @param WP_Error $error An error from this client.
	 */
	public static function status_of( WP_Error $error ): int {
		$data = $error->get_error_data();
		return is_array( $data ) && isset( $data['status'] ) ? (int) $data['status'] : 0;
	}

	/**
	 * One request; JSON in, JSON out.
	 *
	 * @param string                $method  HTTP method.
	 * @param string                $path    Path under the base URL.
	 * @param array<string, mixed>  $query   Query parameters.
	 * @param array<string, mixed>  $body    JSON body (POST only).
	 * @param array<string, string> $headers Extra headers.
	 * @return array<string, mixed>|WP_Error
	 */
	private function request( string $method, string $path, array $query = array(), array $body = array(), array $headers = array() ): array|WP_Error {
		if ( ! $this->is_configured() ) {
			return new WP_Error( 'hookpump_not_configured', __( 'hookpump is not configured: set its URL and API key under Settings → hookpump.', 'hookpump' ), array( 'status' => 0 ) );
		}
		$url  = $this->base_url . $path . ( $query ? '?' . http_build_query( $query, '', '&', PHP_QUERY_RFC3986 ) : '' );
		$args = array(
			'method'      => $method,
			'timeout'     => $this->timeout,
			'redirection' => 0,
			'headers'     => array_merge(
				array(
					'Authorization' => 'Bearer ' . $this->api_key,
					'Accept'        => 'application/json, application/problem+json',
				),
				$headers
			),
		);
		if ( 'POST' === $method && $body ) {
			$args['headers']['Content-Type'] = 'application/json';
			$args['body']                    = wp_json_encode( $body );
		}
		$response = wp_remote_request( $url, $args );
		if ( is_wp_error( $response ) ) {
			return new WP_Error(
				'hookpump_unreachable',
				/* translators: %s: the error of the HTTP request */
				sprintf( __( 'hookpump could not be reached: %s', 'hookpump' ), $response->get_error_message() ),
				array( 'status' => 0 )
			);
		}
		$status  = (int) wp_remote_retrieve_response_code( $response );
		$decoded = json_decode( (string) wp_remote_retrieve_body( $response ), true );
		if ( $status >= 200 && $status < 300 ) {
			return is_array( $decoded ) ? $decoded : array();
		}
		$detail = is_array( $decoded ) && isset( $decoded['detail'] ) ? (string) $decoded['detail'] : '';
		return new WP_Error(
			'hookpump_http_' . $status,
			/* translators: 1: HTTP status code, 2: hookpump's explanation */
			trim( sprintf( __( 'hookpump answered %1$d. %2$s', 'hookpump' ), $status, $detail ) ),
			array(
				'status' => $status,
				'detail' => $detail,
			)
		);
	}
}
