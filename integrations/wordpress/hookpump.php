<?php
/**
 * Plugin Name:       hookpump
 * Plugin URI:        https://github.com/hookpump/hookpump
 * Description:       Hands the site's webhooks to hookpump, which delivers them signed, paced and retried, and shows what happened to them.
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.1
 * Author:            hookpump
 * License:           MIT
 * License URI:       https://opensource.org/licenses/MIT
 * Text Domain:       hookpump
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

define( 'HOOKPUMP_VERSION', '0.1.0' );
define( 'HOOKPUMP_PLUGIN_FILE', __FILE__ );

require_once __DIR__ . '/includes/class-hookpump-options.php';
require_once __DIR__ . '/includes/class-hookpump-client.php';
require_once __DIR__ . '/includes/class-hookpump-outbox.php';
require_once __DIR__ . '/includes/class-hookpump-sender.php';
require_once __DIR__ . '/includes/class-hookpump-event-rules.php';
require_once __DIR__ . '/includes/class-hookpump-settings-page.php';
require_once __DIR__ . '/includes/class-hookpump-deliveries-page.php';
require_once __DIR__ . '/includes/class-hookpump-site-health.php';
require_once __DIR__ . '/includes/class-hookpump-plugin.php';
require_once __DIR__ . '/includes/functions.php';

register_activation_hook( __FILE__, array( 'Hookpump_Plugin', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'Hookpump_Plugin', 'deactivate' ) );

Hookpump_Plugin::boot();

if ( defined( 'WP_CLI' ) && WP_CLI ) {
	require_once __DIR__ . '/includes/class-hookpump-cli-command.php';
	WP_CLI::add_command( 'hookpump', 'Hookpump_CLI_Command' );
}
