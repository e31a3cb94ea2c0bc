<?php
/**
 * Settings → hookpump: URL, keys, event rules, the site's endpoints, and "Test connection".
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * The settings page. Saving goes through the Settings API (options.php checks the nonce and
 * manage_options); "Test connection" is its own admin-post action with its own nonce.
 */
final class Hookpump_Settings_Page {

	const SLUG         = 'hookpump';
	const GROUP        = 'hookpump';
	const TEST_ACTION  = 'hookpump_test_connection';
	const ENDPOINT_ID  = '/^ep_[0-9a-hjkmnp-tv-z]{26}$/';
	const RESULT_TRANS = 'hookpump_test_result_';

	/** Adds the hooks. */
	public static function boot(): void {
		add_action( 'admin_menu', array( self::class, 'add_page' ) );
		add_action( 'admin_init', array( self::class, 'register_settings' ) );
		add_action( 'admin_post_' . self::TEST_ACTION, array( self::class, 'test_connection' ) );
	}

	/** Adds Settings → hookpump. */
	public static function add_page(): void {
		add_options_page( __( 'hookpump', 'hookpump' ), __( 'hookpump', 'hookpump' ), 'manage_options', self::SLUG, array( self::class, 'render' ) );
	}

	/** Registers the options with their sanitisers. */
	public static function register_settings(): void {
		register_setting( self::GROUP, Hookpump_Options::URL, array( 'type' => 'string', 'sanitize_callback' => array( self::class, 'sanitize_url' ) ) );
		register_setting( self::GROUP, Hookpump_Options::SEND_KEY, array( 'type' => 'string', 'sanitize_callback' => array( self::class, 'sanitize_send_key' ) ) );
		register_setting( self::GROUP, Hookpump_Options::READ_KEY, array( 'type' => 'string', 'sanitize_callback' => array( self::class, 'sanitize_read_key' ) ) );
		register_setting( self::GROUP, Hookpump_Options::ENABLED_RULES, array( 'type' => 'array', 'sanitize_callback' => array( self::class, 'sanitize_rules' ) ) );
		register_setting( self::GROUP, Hookpump_Options::ENDPOINT_IDS, array( 'type' => 'array', 'sanitize_callback' => array( self::class, 'sanitize_endpoint_ids' ) ) );
	}

	/**
	 * An http(s) URL, or the saved one with an error when the input is not one.
	 *
	 * @param mixed $value Input.
	 */
	public static function sanitize_url( $value ): string {
		$url = esc_url_raw( trim( (string) $value ), array( 'http', 'https' ) );
		if ( '' !== trim( (string) $value ) && '' === $url ) {
			add_settings_error( Hookpump_Options::URL, 'hookpump_url', __( 'The hookpump URL must start with http:// or https://.', 'hookpump' ) );
			return Hookpump_Options::url();
		}
		if ( self::ends_in_api_version( $url ) ) {
			add_settings_error( Hookpump_Options::URL, 'hookpump_url', self::api_version_message() );
			return Hookpump_Options::url();
		}
		return untrailingslashit( $url );
	}

	/**
	 * A new send key, or the saved one when the field was left empty (it is never shown).
	 *
	 * @param mixed $value Input.
	 */
	public static function sanitize_send_key( $value ): string {
		return self::sanitize_key_field( $value, Hookpump_Options::SEND_KEY );
	}

	/**
	 * A new monitoring key, or the saved one when the field was left empty.
	 *
	 * @param mixed $value Input.
	 */
	public static function sanitize_read_key( $value ): string {
		return self::sanitize_key_field( $value, Hookpump_Options::READ_KEY );
	}

	/**
	 * Keeps the ids of rules that exist.
	 *
	 * @param mixed $value Input.
	 * @return string[]
	 */
	public static function sanitize_rules( $value ): array {
		$known = array_map( 'strval', array_keys( Hookpump_Event_Rules::all() ) );
		$given = is_array( $value ) ? array_map( 'sanitize_key', array_map( 'strval', $value ) ) : array();
		return array_values( array_intersect( $known, $given ) );
	}

	/**
	 * Endpoint ids, one per line or comma-separated; anything else is reported and dropped.
	 *
	 * @param mixed $value Input.
	 * @return string[]
	 */
	public static function sanitize_endpoint_ids( $value ): array {
		$items = is_array( $value ) ? $value : preg_split( '/[\s,]+/', (string) $value );
		$ids   = array();
		foreach ( (array) $items as $item ) {
			$item = trim( sanitize_text_field( (string) $item ) );
			if ( '' === $item ) {
				continue;
			}
			if ( preg_match( self::ENDPOINT_ID, $item ) ) {
				$ids[] = $item;
			} else {
				/* translators: %s: what was typed */
				add_settings_error( Hookpump_Options::ENDPOINT_IDS, 'hookpump_endpoint_id', sprintf( __( 'Not an endpoint id, left out: %s', 'hookpump' ), $item ) );
			}
		}
		return array_values( array_unique( $ids ) );
	}

	/**
	 * A key field: visible ASCII only; empty keeps the saved key.
	 *
	 * @param mixed  $value  Input.
	 * @param string $option The option.
	 */
	private static function sanitize_key_field( $value, string $option ): string {
		$key = preg_replace( '/[^\x21-\x7e]/', '', (string) $value );
		return '' === $key ? (string) get_option( $option, '' ) : $key;
	}

	/** admin-post: checks the URL and both keys against hookpump and shows the answer. */
	public static function test_connection(): void {
		if ( ! current_user_can( 'manage_options' ) ) {
			wp_die( esc_html__( 'You are not allowed to do that.', 'hookpump' ), '', array( 'response' => 403 ) );
		}
		check_admin_referer( self::TEST_ACTION );
		$results = array();
		if ( self::ends_in_api_version( Hookpump_Options::url() ) ) {
			$results[] = array(
				'ok'      => false,
				'message' => self::api_version_message(),
			);
		} else {
			$results[] = self::check_key(
				Hookpump_Client::for_sending(),
				__( 'Send key', 'hookpump' ),
				array( 'send', 'admin' ),
				__( 'hookpump accepts it.', 'hookpump' ),
				__( 'it lacks the send scope, so hookpump would refuse every event', 'hookpump' )
			);
			if ( '' !== Hookpump_Options::read_key() ) {
				$results[] = self::check_key(
					Hookpump_Client::for_monitoring(),
					__( 'Monitoring key', 'hookpump' ),
					array( 'read', 'admin' ),
					__( 'hookpump lets it read the delivery log.', 'hookpump' ),
					__( 'it lacks the read scope, so Tools → Webhook deliveries cannot show anything', 'hookpump' ),
					__( 'Without the admin scope it cannot Retry.', 'hookpump' )
				);
			}
		}
		set_transient( self::RESULT_TRANS . get_current_user_id(), $results, 5 * MINUTE_IN_SECONDS );
		wp_safe_redirect( add_query_arg( 'page', self::SLUG, admin_url( 'options-general.php' ) ) );
		exit;
	}

	/**
	 * Asks hookpump who a key is (GET /v1/api-keys/me) and whether it has the scope it is used for.
	 *
	 * @param Hookpump_Client $client        A client with the key.
	 * @param string          $label         The key's name on this page.
	 * @param string[]        $needed        Scopes, any of which will do.
	 * @param string          $ok            What it means when the key has one.
	 * @param string          $lacking       What it means when it has none.
	 * @param string          $without_admin Said too when the key lacks admin ('' for nothing).
	 * @return array{ok: bool, message: string}
	 */
	private static function check_key( Hookpump_Client $client, string $label, array $needed, string $ok, string $lacking, string $without_admin = '' ): array {
		$identity = $client->identify_key();
		if ( is_wp_error( $identity ) ) {
			return array(
				'ok'      => false,
				/* translators: 1: the key's name, 2: the error */
				'message' => sprintf( __( '%1$s: %2$s', 'hookpump' ), $label, $identity->get_error_message() ),
			);
		}
		if ( ! array_intersect( $needed, $identity['scopes'] ) ) {
			return array(
				'ok'      => false,
				/* translators: 1: the key's name, 2: what is wrong, 3: the scopes it has */
				'message' => sprintf( __( '%1$s: %2$s (its scopes: %3$s).', 'hookpump' ), $label, $lacking, implode( ', ', $identity['scopes'] ) ),
			);
		}
		$message = sprintf( '%1$s: %2$s', $label, $ok );
		if ( '' !== $without_admin && ! in_array( 'admin', $identity['scopes'], true ) ) {
			$message .= ' ' . $without_admin;
		}
		return array(
			'ok'      => true,
			'message' => $message,
		);
	}

	/**
	 * Whether a URL is hookpump's API root (…/v1) rather than hookpump's own: the plugin adds /v1.
	 *
	 * @param string $url A URL.
	 */
	private static function ends_in_api_version( string $url ): bool {
		return (bool) preg_match( '#/v1/?$#i', $url );
	}

	/**
	 * Whether a URL is plain http:// to a host other than this machine (loopback is not on any wire).
	 *
	 * @param string $url A URL.
	 */
	private static function is_clear_text_over_a_network( string $url ): bool {
		if ( 'http' !== strtolower( (string) wp_parse_url( $url, PHP_URL_SCHEME ) ) ) {
			return false;
		}
		$host = strtolower( trim( (string) wp_parse_url( $url, PHP_URL_HOST ), '[]' ) );
		if ( 'localhost' === $host || str_ends_with( $host, '.localhost' ) || '::1' === $host ) {
			return false;
		}
		return ! ( filter_var( $host, FILTER_VALIDATE_IP, FILTER_FLAG_IPV4 ) && str_starts_with( $host, '127.' ) );
	}

	/** What to do about a URL ending in /v1. */
	private static function api_version_message(): string {
		return __( 'The hookpump URL ends in /v1: enter hookpump\'s own URL (e.g. https://hooks.example.com); the plugin adds /v1 itself.', 'hookpump' );
	}

	/** Renders the page. */
	public static function render(): void {
		if ( ! current_user_can( 'manage_options' ) ) {
			return;
		}
		$rules   = Hookpump_Event_Rules::all();
		$enabled = Hookpump_Options::enabled_rules();
		$results = get_transient( self::RESULT_TRANS . get_current_user_id() );
		delete_transient( self::RESULT_TRANS . get_current_user_id() );
		?>
		<div class="wrap">
			<h1><?php esc_html_e( 'hookpump', 'hookpump' ); ?></h1>
			<?php if ( self::is_clear_text_over_a_network( Hookpump_Options::url() ) ) : ?>
				<div class="notice notice-warning hookpump-http-warning"><p><?php esc_html_e( 'The hookpump URL uses http:// to another machine: the API keys and every event travel unencrypted and can be read or changed on the way. Use https://.', 'hookpump' ); ?></p></div>
			<?php endif; ?>
			<?php foreach ( is_array( $results ) ? $results : array() as $result ) : ?>
				<div class="notice <?php echo $result['ok'] ? 'notice-success' : 'notice-error'; ?>"><p><?php echo esc_html( $result['message'] ); ?></p></div>
			<?php endforeach; ?>
			<form method="post" action="<?php echo esc_url( admin_url( 'options.php' ) ); ?>">
				<?php settings_fields( self::GROUP ); ?>
				<table class="form-table" role="presentation">
					<tr>
						<th scope="row"><label for="hookpump_url"><?php esc_html_e( 'hookpump URL', 'hookpump' ); ?></label></th>
						<td><input type="url" class="regular-text" id="hookpump_url" name="<?php echo esc_attr( Hookpump_Options::URL ); ?>" value="<?php echo esc_attr( Hookpump_Options::url() ); ?>" placeholder="https://hooks.example.com"></td>
					</tr>
					<?php self::render_key_row( Hookpump_Options::SEND_KEY, __( 'Send key', 'hookpump' ), __( 'An API key with the send scope (hookpump api-key create --scope send).', 'hookpump' ) ); ?>
					<?php self::render_key_row( Hookpump_Options::READ_KEY, __( 'Monitoring key', 'hookpump' ), __( 'Optional: a key with the read scope for Tools → Webhook deliveries; give it the admin scope too for its Retry button.', 'hookpump' ) ); ?>
					<tr>
						<th scope="row"><?php esc_html_e( 'Events to send', 'hookpump' ); ?></th>
						<td><fieldset>
							<?php foreach ( $rules as $id => $rule ) : ?>
								<label><input type="checkbox" name="<?php echo esc_attr( Hookpump_Options::ENABLED_RULES ); ?>[]" value="<?php echo esc_attr( (string) $id ); ?>" <?php checked( in_array( (string) $id, $enabled, true ) ); ?>> <?php echo esc_html( (string) ( $rule['label'] ?? $id ) ); ?></label><br>
							<?php endforeach; ?>
						</fieldset></td>
					</tr>
					<tr>
						<th scope="row"><label for="hookpump_endpoint_ids"><?php esc_html_e( "This site's endpoints", 'hookpump' ); ?></label></th>
						<td>
							<textarea id="hookpump_endpoint_ids" class="large-text code" rows="3" name="<?php echo esc_attr( Hookpump_Options::ENDPOINT_IDS ); ?>"><?php echo esc_textarea( implode( "\n", Hookpump_Options::endpoint_ids() ) ); ?></textarea>
							<p class="description"><?php esc_html_e( 'Endpoint ids (ep_…), one per line: Tools → Webhook deliveries shows their deliveries.', 'hookpump' ); ?></p>
						</td>
					</tr>
				</table>
				<?php submit_button(); ?>
			</form>
			<form method="post" action="<?php echo esc_url( admin_url( 'admin-post.php' ) ); ?>">
				<input type="hidden" name="action" value="<?php echo esc_attr( self::TEST_ACTION ); ?>">
				<?php wp_nonce_field( self::TEST_ACTION ); ?>
				<?php submit_button( __( 'Test connection', 'hookpump' ), 'secondary', 'hookpump-test', false ); ?>
			</form>
		</div>
		<?php
	}

	/**
	 * A key's row: a password field that is never filled in, and the key's last four characters.
	 *
	 * @param string $option      The option.
	 * @param string $label       Label.
	 * @param string $description Help text.
	 */
	private static function render_key_row( string $option, string $label, string $description ): void {
		$saved = (string) get_option( $option, '' );
		?>
		<tr>
			<th scope="row"><label for="<?php echo esc_attr( $option ); ?>"><?php echo esc_html( $label ); ?></label></th>
			<td>
				<input type="password" class="regular-text" autocomplete="new-password" id="<?php echo esc_attr( $option ); ?>" name="<?php echo esc_attr( $option ); ?>" value="">
				<p class="description">
					<?php echo esc_html( $description ); ?>
					<?php if ( '' !== $saved ) : ?>
						<?php
						/* translators: %s: the key's last four characters after dots */
						echo esc_html( sprintf( __( 'Saved: %s. Leave empty to keep it.', 'hookpump' ), Hookpump_Options::masked( $saved ) ) );
						?>
					<?php endif; ?>
				</p>
			</td>
		</tr>
		<?php
	}
}
