<?php
/**
 * Wiring: activation, the WP-Cron schedule, and the hooks of each part.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * Hooks every part into WordPress.
 */
final class Hookpump_Plugin {

	/** WP-Cron schedule of the outbox flush. */
	const CRON_SCHEDULE = 'hookpump_every_five_minutes';

	/** Adds the hooks; called once when the plugin file loads. */
	public static function boot(): void {
		// Rules hook in once every plugin is loaded, so `hookpump_events` sees everyone's rules.
		add_action( 'plugins_loaded', array( 'Hookpump_Event_Rules', 'register' ), 20 );
		add_filter( 'cron_schedules', array( self::class, 'add_cron_schedule' ) ); // phpcs:ignore WordPress.WP.CronInterval.ChangeDetected -- five minutes.
		add_action( Hookpump_Sender::CRON_HOOK, array( 'Hookpump_Sender', 'flush_quietly' ) );
		add_action( 'admin_init', array( self::class, 'upgrade' ) );
		Hookpump_Settings_Page::boot();
		Hookpump_Deliveries_Page::boot();
		Hookpump_Site_Health::boot();
	}

	/** Activation: the table, the options that must not autoload, and the flush schedule. */
	public static function activate(): void {
		Hookpump_Options::create_missing();
		Hookpump_Outbox::install();
		if ( ! wp_next_scheduled( Hookpump_Sender::CRON_HOOK ) ) {
			wp_schedule_event( time(), self::CRON_SCHEDULE, Hookpump_Sender::CRON_HOOK );
		}
	}

	/** Deactivation stops the schedule; the outbox is kept for when the plugin comes back. */
	public static function deactivate(): void {
		wp_clear_scheduled_hook( Hookpump_Sender::CRON_HOOK );
	}

	/** A newer plugin version over an older table upgrades it. */
	public static function upgrade(): void {
		if ( get_option( Hookpump_Options::DB_VERSION ) !== Hookpump_Outbox::SCHEMA_VERSION ) {
			self::activate();
		}
	}

	/**
	 * Adds the five-minute schedule.
	 *
	 * @param array<string, array{interval: int, display: string}> $schedules Schedules.
	 * @return array<string, array{interval: int, display: string}>
	 */
	public static function add_cron_schedule( array $schedules ): array {
		$schedules[ self::CRON_SCHEDULE ] = array(
			'interval' => 5 * MINUTE_IN_SECONDS,
			'display'  => __( 'Every five minutes (hookpump outbox)', 'hookpump' ),
		);
		return $schedules;
	}
}
