<?php
/**
 * Uninstall: removes the plugin's options, its table, its transients and its WP-Cron event.
 *
 * @package Hookpump
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

require_once __DIR__ . '/includes/class-hookpump-options.php';
require_once __DIR__ . '/includes/class-hookpump-outbox.php';

foreach ( Hookpump_Options::ALL as $hookpump_option ) {
	delete_option( $hookpump_option );
}
Hookpump_Outbox::drop();
wp_clear_scheduled_hook( 'hookpump_flush' );

global $wpdb;
// Per-user notices of the settings and deliveries pages.
$wpdb->query( "DELETE FROM {$wpdb->options} WHERE option_name LIKE '\\_transient\\_hookpump\\_%' OR option_name LIKE '\\_transient\\_timeout\\_hookpump\\_%'" ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
