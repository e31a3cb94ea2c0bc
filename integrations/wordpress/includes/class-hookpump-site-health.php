<?php
/**
 * Site Health: events waiting in the outbox, rejected events, and the last error.
 *
 * @package Hookpump
 */

defined( 'ABSPATH' ) || exit;

/**
 * A Site Health test and a section of the Info tab.
 */
final class Hookpump_Site_Health {

	/** Adds the hooks. */
	public static function boot(): void {
		add_filter( 'site_status_tests', array( self::class, 'add_test' ) );
		add_filter( 'debug_information', array( self::class, 'add_info' ) );
	}

	/**
	 * Registers the outbox test.
	 *
	 * @param array<string, mixed> $tests Tests.
	 * @return array<string, mixed>
	 */
	public static function add_test( array $tests ): array {
		$tests['direct']['hookpump_outbox'] = array(
			'label' => __( 'hookpump outbox', 'hookpump' ),
			'test'  => array( self::class, 'test' ),
		);
		return $tests;
	}

	/**
	 * The test: good when hookpump is set up, some event is ticked and nothing waits; recommended
	 * otherwise, saying what to do.
	 *
	 * @return array<string, mixed>
	 */
	public static function test(): array {
		$result = array(
			'label'       => __( 'Webhooks reach hookpump', 'hookpump' ),
			'status'      => 'good',
			'badge'       => array(
				'label' => __( 'Webhooks', 'hookpump' ),
				'color' => 'blue',
			),
			'description' => '<p>' . esc_html__( 'No events are waiting to be handed to hookpump.', 'hookpump' ) . '</p>',
			'actions'     => '',
			'test'        => 'hookpump_outbox',
		);
		if ( '' === Hookpump_Options::url() || '' === Hookpump_Options::send_key() ) {
			$result['status']      = 'recommended';
			$result['label']       = __( 'hookpump is not set up yet', 'hookpump' );
			$result['description'] = '<p>' . esc_html__( 'Enter hookpump\'s URL and a send key on Settings → hookpump: until then no webhook is sent.', 'hookpump' ) . '</p>';
			return $result;
		}
		if ( ! Hookpump_Options::enabled_rules() ) {
			$result['status']      = 'recommended';
			$result['label']       = __( 'hookpump sends no events yet', 'hookpump' );
			$result['description'] = '<p>' . esc_html__( 'No event is ticked on Settings → hookpump, so the site sends nothing unless another plugin calls hookpump_send().', 'hookpump' ) . '</p>';
		}
		$counts  = Hookpump_Outbox::counts();
		$pending = $counts[ Hookpump_Outbox::PENDING ];
		$refused = $counts[ Hookpump_Outbox::REJECTED ];
		$error   = Hookpump_Options::last_error();
		$dropped = Hookpump_Options::dropped();
		if ( $pending > 0 || $refused > 0 || $dropped > 0 ) {
			$result['status'] = 'recommended';
			$result['label']  = __( 'Some webhook events have not reached hookpump', 'hookpump' );
			$lines            = array(
				/* translators: %d: number of events */
				sprintf( _n( '%d event is waiting to be sent to hookpump.', '%d events are waiting to be sent to hookpump.', $pending, 'hookpump' ), $pending ),
			);
			if ( $refused > 0 ) {
				/* translators: %d: number of events */
				$lines[] = sprintf( _n( '%d event was refused by hookpump and will not be sent.', '%d events were refused by hookpump and will not be sent.', $refused, 'hookpump' ), $refused );
			}
			if ( $dropped > 0 ) {
				$limits = Hookpump_Outbox::limits();
				/* translators: 1: number of events, 2: days, 3: rows */
				$lines[] = sprintf( _n( '%1$d event was dropped unsent: the outbox keeps events at most %2$d days and %3$d at a time, oldest dropped first.', '%1$d events were dropped unsent: the outbox keeps events at most %2$d days and %3$d at a time, oldest dropped first.', $dropped, 'hookpump' ), $dropped, $limits['max_pending_days'], $limits['max_pending_rows'] );
			}
			if ( $error ) {
				/* translators: 1: the error, 2: when */
				$lines[] = sprintf( __( 'Last error: %1$s (%2$s ago)', 'hookpump' ), $error['message'], human_time_diff( $error['at'] ) );
			}
			$result['description'] = '<p>' . implode( '</p><p>', array_map( 'esc_html', $lines ) ) . '</p>';
		}
		return $result;
	}

	/**
	 * The Info tab's hookpump section.
	 *
	 * @param array<string, mixed> $info Sections.
	 * @return array<string, mixed>
	 */
	public static function add_info( array $info ): array {
		$counts             = Hookpump_Outbox::counts();
		$error              = Hookpump_Options::last_error();
		$info['hookpump'] = array(
			'label'  => __( 'hookpump', 'hookpump' ),
			'fields' => array(
				'url'      => array(
					'label' => __( 'URL', 'hookpump' ),
					'value' => Hookpump_Options::url(),
				),
				'pending'  => array(
					'label' => __( 'Events waiting', 'hookpump' ),
					'value' => $counts[ Hookpump_Outbox::PENDING ],
				),
				'rejected' => array(
					'label' => __( 'Events refused', 'hookpump' ),
					'value' => $counts[ Hookpump_Outbox::REJECTED ],
				),
				'dropped'  => array(
					'label' => __( 'Events dropped unsent', 'hookpump' ),
					'value' => Hookpump_Options::dropped(),
				),
				'error'    => array(
					'label' => __( 'Last error', 'hookpump' ),
					'value' => $error ? gmdate( 'c', $error['at'] ) . ' ' . $error['message'] : __( 'none', 'hookpump' ),
				),
			),
		);
		return $info;
	}
}
