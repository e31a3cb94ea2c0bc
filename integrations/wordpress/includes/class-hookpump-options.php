<?php
/**
 * Every option the plugin stores, by name, with typed getters.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * The plugin's options. Keys are stored with autoload off so they are not read on every page.
 */
final class Hookpump_Options {

	const URL           = 'hookpump_url';
	const SEND_KEY      = 'hookpump_send_key';
	const READ_KEY      = 'hookpump_read_key';
	const ENABLED_RULES = 'hookpump_enabled_rules';
	const ENDPOINT_IDS  = 'hookpump_endpoint_ids';
	const SITE_ID       = 'hookpump_site_id';
	const LAST_ERROR    = 'hookpump_last_error';
	const DB_VERSION    = 'hookpump_db_version';
	const DROPPED       = 'hookpump_outbox_dropped';

	/** Options holding secrets or bookkeeping: never autoloaded. */
	const NOT_AUTOLOADED = array( self::SEND_KEY, self::READ_KEY, self::LAST_ERROR, self::DROPPED );

	/** Every option, for uninstall.php. */
	const ALL = array(
		self::URL,
		self::SEND_KEY,
		self::READ_KEY,
		self::ENABLED_RULES,
		self::ENDPOINT_IDS,
		self::SITE_ID,
		self::LAST_ERROR,
		self::DB_VERSION,
		self::DROPPED,
	);

	/**
	 * Creates the options that must not be autoloaded, so that later updates keep autoload off.
	 */
	public static function create_missing(): void {
		foreach ( self::NOT_AUTOLOADED as $name ) {
			if ( false === get_option( $name, false ) ) {
				add_option( $name, '', '', false );
			}
		}
		if ( ! get_option( self::SITE_ID ) ) {
			add_option( self::SITE_ID, str_replace( '-', '', wp_generate_uuid4() ) );
		}
	}

	/** hookpump's base URL without a trailing slash, or '' when not configured. */
	public static function url(): string {
		return untrailingslashit( (string) get_option( self::URL, '' ) );
	}

	/** The `send`-scope key. */
	public static function send_key(): string {
		return (string) get_option( self::SEND_KEY, '' );
	}

	/** The `read` (and, to retry, `admin`) scope key for the deliveries page. */
	public static function read_key(): string {
		return (string) get_option( self::READ_KEY, '' );
	}

	/**
	 * Ids of the event rules the site owner ticked.
	 *
	 * @return string[]
	 */
	public static function enabled_rules(): array {
		$rules = get_option( self::ENABLED_RULES, array() );
		return is_array( $rules ) ? array_values( array_filter( $rules, 'is_string' ) ) : array();
	}

	/**
	 * The site's endpoint ids, whose deliveries the deliveries page shows.
	 *
	 * @return string[]
	 */
	public static function endpoint_ids(): array {
		$ids = get_option( self::ENDPOINT_IDS, array() );
		return is_array( $ids ) ? array_values( array_filter( $ids, 'is_string' ) ) : array();
	}

	/** A random id for this site, made once on activation: the first part of every Idempotency-Key. */
	public static function site_id(): string {
		$id = (string) get_option( self::SITE_ID, '' );
		return '' !== $id ? $id : substr( hash( 'sha256', home_url() ), 0, 32 );
	}

	/**
	 * The last error talking to hookpump: message and time, or null.
	 *
	 * @return array{message: string, at: int}|null
	 */
	public static function last_error(): ?array {
		$error = get_option( self::LAST_ERROR, '' );
		if ( is_array( $error ) && isset( $error['message'], $error['at'] ) ) {
			return array(
				'message' => (string) $error['message'],
				'at'      => (int) $error['at'],
			);
		}
		return null;
	}

	/**
	 * Remembers the last error (shown in Site Health).
	 *
	 * @param string $message What went wrong, without secrets.
	 */
	public static function record_error( string $message ): void {
		update_option(
			self::LAST_ERROR,
			array(
				'message' => $message,
				'at'      => time(),
			),
			false
		);
	}

	/** How many events the outbox dropped unsent (too old, or over its cap) since activation. */
	public static function dropped(): int {
		return (int) get_option( self::DROPPED, 0 );
	}

	/**
	 * Counts events the outbox dropped.
	 *
	 * @param int $count How many more.
	 */
	public static function add_dropped( int $count ): void {
		update_option( self::DROPPED, self::dropped() + $count, false );
	}

	/** Forgets the last error: hookpump took an event since. */
	public static function clear_error(): void {
		if ( '' !== get_option( self::LAST_ERROR, '' ) ) {
			update_option( self::LAST_ERROR, '', false );
		}
	}

	/**
	 * A key shown as its last four characters only.
	 *
	 * @param string $key The key.
	 */
	public static function masked( string $key ): string {
		if ( '' === $key ) {
			return '';
		}
		return str_repeat( '•', 8 ) . substr( $key, -4 );
	}
}
