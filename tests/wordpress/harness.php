<?php
/**
 * Drives a real WordPress (Debian's /usr/share/wordpress) from the command line for
 * tests/test_wordpress.py: `php harness.php <site root> <action>`, arguments as JSON on stdin,
 * the result as one `@@HARNESS@@{json}` line on stdout.
 *
 * The site root holds symlinks to WordPress's files and the test's own wp-config.php, so ABSPATH
 * is the site root and WordPress reads that config rather than Debian's.
 */

[ , $harness_root, $harness_action ] = $argv;
$harness_input = json_decode( (string) stream_get_contents( STDIN ), true ) ?: array();

define( 'ABSPATH', rtrim( $harness_root, '/' ) . '/' );
$_SERVER = array_merge(
	$_SERVER,
	array(
		'HTTP_HOST'       => 'wp.test',
		'SERVER_NAME'     => 'wp.test',
		'SERVER_PORT'     => '80',
		'REQUEST_METHOD'  => 'GET',
		'REQUEST_URI'     => '/',
		'SCRIPT_NAME'     => '/index.php',
		'PHP_SELF'        => '/index.php',
		'REMOTE_ADDR'     => '127.0.0.1',
		'HTTP_USER_AGENT' => 'hookpump-tests',
	)
);

function harness_result( $value ) {
	echo "\n@@HARNESS@@" . json_encode( $value ) . "\n";
}

/**
 * Reports at the very end of the request, after the plugin's own end-of-request work (WordPress's
 * `shutdown` action runs from a shutdown function registered before this one): the outbox as the
 * request leaves it, and the seconds the whole request took.
 */
function harness_result_at_end( array $value ) {
	register_shutdown_function(
		static function () use ( $value ) {
			$value['outbox']  = harness_outbox();
			$value['elapsed'] = microtime( true ) - $_SERVER['REQUEST_TIME_FLOAT'];
			// The request's own work: from WordPress loaded to the end of its shutdown.
			$value['work'] = microtime( true ) - $GLOBALS['harness_loaded'];
			harness_result( $value );
		}
	);
}

function harness_outbox() {
	global $wpdb;
	return $wpdb->get_results( 'SELECT id, idempotency_key, event_type, message, status, attempts FROM ' . Hookpump_Outbox::table() . ' ORDER BY id', ARRAY_A );
}

if ( ! empty( $harness_input['woocommerce'] ) ) {
	// WooCommerce is not installable here; the plugin only asks whether its main class exists.
	final class WooCommerce {}
}
if ( ! empty( $harness_input['extra_rule'] ) ) {
	define( 'HOOKPUMP_HARNESS_EXTRA_RULE', true ); // mu-harness.php adds a rule through `hookpump_events`
}

if ( 'request' === $harness_action ) {
	// One HTTP request to a wp-admin file, as a browser with the given cookies would make it.
	$harness_file                       = $harness_input['file'];
	$_GET                       = $harness_input['get'] ?? array();
	$_POST                      = $harness_input['post'] ?? array();
	$_COOKIE                    = $harness_input['cookies'] ?? array();
	$_REQUEST                   = array_merge( $_GET, $_POST );
	$_SERVER['REQUEST_METHOD']  = $harness_input['method'] ?? 'GET';
	$_SERVER['SCRIPT_NAME']     = '/' . $harness_file;
	$_SERVER['PHP_SELF']        = '/' . $harness_file;
	$_SERVER['SCRIPT_FILENAME'] = ABSPATH . $harness_file;
	$_SERVER['REQUEST_URI']     = '/' . $harness_file . ( $_GET ? '?' . http_build_query( $_GET ) : '' );
	chdir( dirname( ABSPATH . $harness_file ) );
	require ABSPATH . $harness_file;
	exit;
}

if ( ! empty( $harness_input['outbox_limits'] ) ) {
	$harness_outbox_limits = $harness_input['outbox_limits'];
}

if ( 'install' === $harness_action ) {
	define( 'WP_INSTALLING', true );
}
require ABSPATH . 'wp-load.php';
if ( isset( $harness_outbox_limits ) ) {
	add_filter( 'hookpump_outbox_limits', static fn( array $limits ) => array_merge( $limits, $harness_outbox_limits ) );
}
$harness_loaded = microtime( true );

switch ( $harness_action ) {
	case 'install':
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$installed = wp_install( 'hookpump test site', 'admin', 'admin@example.com', true, '', wp_generate_password( 24 ) );
		harness_result( array( 'user_id' => $installed['user_id'] ) );
		break;

	case 'activate':
		require_once ABSPATH . 'wp-admin/includes/plugin.php';
		$activated = activate_plugin( 'hookpump/hookpump.php' );
		global $wpdb;
		$autoload = $wpdb->get_var( $wpdb->prepare( "SELECT autoload FROM {$wpdb->options} WHERE option_name = %s", 'hookpump_send_key' ) );
		harness_result(
			array(
				'error'             => is_wp_error( $activated ) ? $activated->get_error_message() : null,
				'send_key_autoload' => $autoload,
				'cron'              => wp_next_scheduled( 'hookpump_flush' ),
				'table'             => $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', Hookpump_Outbox::table() ) ),
			)
		);
		break;

	case 'configure':
		foreach ( $harness_input as $name => $value ) {
			update_option( $name, $value );
		}
		harness_result( true );
		break;

	case 'options':
		$harness_options = array();
		foreach ( $harness_input['names'] as $harness_name ) {
			$harness_options[ $harness_name ] = get_option( $harness_name );
		}
		harness_result( $harness_options );
		break;

	case 'login':
		// An administrator's session, as wp-login.php would set its cookies.
		$user       = get_user_by( 'login', 'admin' );
		$expiration = time() + DAY_IN_SECONDS;
		$token      = WP_Session_Tokens::get_instance( $user->ID )->create( $expiration );
		harness_result(
			array(
				AUTH_COOKIE      => wp_generate_auth_cookie( $user->ID, $expiration, 'auth', $token ),
				LOGGED_IN_COOKIE => wp_generate_auth_cookie( $user->ID, $expiration, 'logged_in', $token ),
			)
		);
		break;

	case 'publish_post':
		// What the editor's Publish button ends in.
		$post_id = wp_insert_post(
			array(
				'post_title'   => $harness_input['title'],
				'post_content' => 'Hello from the hookpump test.',
				'post_status'  => $harness_input['status'] ?? 'publish',
				'post_author'  => 1,
			),
			true
		);
		harness_result_at_end( array( 'post_id' => $post_id ) );
		break;

	case 'publish_posts':
		// A bulk action: several posts published in one request.
		$harness_ids = array();
		for ( $harness_n = 1; $harness_n <= (int) $harness_input['n']; $harness_n++ ) {
			$harness_ids[] = wp_insert_post(
				array(
					'post_title'   => $harness_input['title'] . ' ' . $harness_n,
					'post_content' => 'One of several.',
					'post_status'  => 'publish',
					'post_author'  => 1,
				),
				true
			);
		}
		harness_result_at_end( array( 'post_ids' => $harness_ids ) );
		break;

	case 'trash_post':
		wp_trash_post( (int) $harness_input['post_id'] );
		harness_result_at_end( array() );
		break;

	case 'age_outbox_row':
		// A row as if it had been kept `days` ago (and, with `status`, as if refused then).
		global $wpdb;
		$wpdb->update(
			Hookpump_Outbox::table(),
			array_filter(
				array(
					'created_at' => gmdate( 'Y-m-d H:i:s', time() - (int) ( $harness_input['days'] * DAY_IN_SECONDS ) ),
					'status'     => $harness_input['status'] ?? null,
				)
			),
			array( 'id' => (int) $harness_input['id'] )
		);
		harness_result( true );
		break;

	case 'forget_unreachable':
		// As if the minute after a timeout had passed.
		delete_transient( Hookpump_Sender::UNREACHABLE_MARK );
		harness_result( true );
		break;

	case 'republish':
		// The same transition hook fired again for the same post (a plugin calling wp_publish_post twice, a double submit).
		$post = get_post( (int) $harness_input['post_id'] );
		do_action( 'transition_post_status', 'publish', 'draft', $post );
		harness_result_at_end( array() );
		break;

	case 'comment':
		$comment_id = wp_insert_comment(
			array(
				'comment_post_ID'  => (int) $harness_input['post_id'],
				'comment_author'   => $harness_input['author'] ?? 'Reader',
				'comment_content'  => $harness_input['content'],
				'comment_approved' => $harness_input['approved'] ?? 1,
			)
		);
		harness_result( array( 'comment_id' => $comment_id ) );
		break;

	case 'send':
		$result = hookpump_send( $harness_input['event_type'], $harness_input['payload'], $harness_input['args'] ?? array() );
		harness_result( is_wp_error( $result ) ? array( 'error' => $result->get_error_code(), 'message' => $result->get_error_message() ) : array( 'id' => $result ) );
		break;

	case 'outbox':
		harness_result( array( 'outbox' => harness_outbox(), 'health' => Hookpump_Site_Health::test(), 'last_error' => Hookpump_Options::last_error(), 'dropped' => Hookpump_Options::dropped() ) );
		break;

	case 'run_cron':
		// Time has come for the flush: its event is made due (WordPress's own events are left for
		// later: they call WordPress.org), then wp-cron.php runs as a visitor's spawn would run it.
		$harness_crons = array();
		foreach ( _get_cron_array() as $harness_time => $harness_hooks ) {
			foreach ( $harness_hooks as $harness_hook => $harness_events ) {
				$harness_due = 'hookpump_flush' === $harness_hook ? time() - 1 : max( $harness_time, time() + HOUR_IN_SECONDS );
				$harness_crons[ $harness_due ][ $harness_hook ] = $harness_events;
			}
		}
		ksort( $harness_crons );
		_set_cron_array( $harness_crons );
		register_shutdown_function(
			static function () {
				harness_result( array( 'outbox' => harness_outbox() ) );
			}
		);
		require ABSPATH . 'wp-cron.php';
		break;

	case 'cli':
		// WP-CLI itself is not installable here (it is not in Debian, PyPI or npm): a stand-in for its
		// output functions runs the plugin's command methods, which do the real work.
		if ( ! class_exists( 'WP_CLI' ) ) {
			final class WP_CLI {
				public static array $lines = array();
				public static function line( $text ) { self::$lines[] = $text; }
				public static function success( $text ) { self::$lines[] = 'Success: ' . $text; }
				public static function warning( $text ) { self::$lines[] = 'Warning: ' . $text; }
				public static function error( $text ) { self::$lines[] = 'Error: ' . $text; throw new RuntimeException( $text ); }
			}
		}
		require_once WP_PLUGIN_DIR . '/hookpump/includes/class-hookpump-cli-command.php';
		$harness_exit = 0;
		try {
			( new Hookpump_CLI_Command() )->{$harness_input['command']}( $harness_input['args'] ?? array(), $harness_input['assoc_args'] ?? array() );
		} catch ( RuntimeException $harness_error ) {
			$harness_exit = 1;
		}
		harness_result( array( 'exit' => $harness_exit, 'lines' => WP_CLI::$lines ) );
		break;

	case 'order_status_changed':
		// What WooCommerce fires when an order moves from one status to another.
		do_action( 'woocommerce_order_status_changed', (int) $harness_input['order_id'], $harness_input['from'], $harness_input['to'], null );
		harness_result_at_end( array() );
		break;

	case 'ping':
		do_action( 'harness_ping', (int) $harness_input['n'] );
		harness_result_at_end( array() );
		break;

	case 'make_network':
		// What wp-admin's Network Setup does; wp-config.php turns MULTISITE on once the marker exists.
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		require_once ABSPATH . 'wp-admin/includes/network.php';
		global $wpdb;
		foreach ( $wpdb->tables( 'ms_global' ) as $harness_table => $harness_prefixed ) {
			$wpdb->$harness_table = $harness_prefixed;
		}
		install_network();
		$harness_network = populate_network( 1, 'wp.test', 'admin@example.com', 'hookpump network', '/', false );
		if ( is_wp_error( $harness_network ) ) {
			harness_result( array( 'error' => $harness_network->get_error_message() ) );
			break;
		}
		touch( ABSPATH . 'multisite' );
		harness_result( array( 'error' => null ) );
		break;

	case 'network_activate':
		// A second site, the plugin activated for the whole network, and the second site's admin
		// visited once (where the plugin makes its table and options, as on any upgrade).
		require_once ABSPATH . 'wp-admin/includes/plugin.php';
		$harness_blog = wpmu_create_blog( 'wp.test', '/second/', 'Second site', 1 );
		$activated    = activate_plugin( 'hookpump/hookpump.php', '', true );
		switch_to_blog( $harness_blog );
		Hookpump_Plugin::upgrade();
		update_option( 'hookpump_send_key', 'hp_second_site_key' );
		restore_current_blog();
		harness_result( array( 'blog_id' => $harness_blog, 'error' => is_wp_error( $activated ) ? $activated->get_error_message() : null ) );
		break;

	case 'network_state':
		global $wpdb;
		$harness_state = array();
		foreach ( get_sites( array( 'fields' => 'ids' ) ) as $harness_blog ) {
			switch_to_blog( $harness_blog );
			$harness_state[ $harness_blog ] = array(
				'options' => $wpdb->get_col( "SELECT option_name FROM {$wpdb->options} WHERE option_name LIKE 'hookpump%'" ),
				'table'   => $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', $wpdb->prefix . 'hookpump_outbox' ) ),
			);
			restore_current_blog();
		}
		harness_result( $harness_state );
		break;

	case 'uninstall':
		require_once ABSPATH . 'wp-admin/includes/plugin.php';
		deactivate_plugins( 'hookpump/hookpump.php' );
		uninstall_plugin( 'hookpump/hookpump.php' );
		global $wpdb;
		harness_result(
			array(
				'options' => $wpdb->get_col( "SELECT option_name FROM {$wpdb->options} WHERE option_name LIKE 'hookpump%'" ),
				'table'   => $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', $wpdb->prefix . 'hookpump_outbox' ) ),
				'cron'    => wp_next_scheduled( 'hookpump_flush' ),
			)
		);
		break;

	default:
		fwrite( STDERR, "harness: unknown action $harness_action\n" );
		exit( 2 );
}
