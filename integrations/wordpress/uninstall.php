<?php
/**
 * Uninstall: removes the plugin's options, its table, its transients and its WP-Cron event.
 *
 * @package Hookpump
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

require_once __DIR__ . '/includes/class-hookpump-options.php';
require_once __DIR__ . '/includes/class-hookpump-outbox.php';

/**
 * Removes the plugin's options, table, transients and cron event from the current site.
 */
function hookpump_uninstall_site(): void {
	global $wpdb;
	foreach ( Hookpump_Options::ALL as $option ) {
		delete_option( $option );
	}
	Hookpump_Outbox::drop();
	wp_clear_scheduled_hook( 'hookpump_flush' );
	// Per-user notices of the settings and deliveries pages, and the unreachable mark.
	$wpdb->query( "DELETE FROM {$wpdb->options} WHERE option_name LIKE '\\_transient\\_hookpump\\_%' OR option_name LIKE '\\_transient\\_timeout\\_hookpump\\_%'" ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
}

if ( is_multisite() ) {
	// A network-activated plugin made its table and options on every site: clean each one.
	foreach ( get_sites(
		array(
			'fields' => 'ids',
			'number' => 0,
		)
	) as $hookpump_site_id ) {
		switch_to_blog( (int) $hookpump_site_id );
		hookpump_uninstall_site();
		restore_current_blog();
	}
} else {
	hookpump_uninstall_site();
}
