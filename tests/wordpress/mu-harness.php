<?php
/**
 * Must-use plugin of the test site: no mail leaves it, a redirect is printed (the command line
 * has no Location header to read), and, when the harness asks, another plugin's event rule is
 * added through the `hookpump_events` filter.
 */

add_filter( 'pre_wp_mail', '__return_true' );
add_filter(
	'wp_redirect',
	static function ( $location ) {
		echo "\n@@REDIRECT@@" . $location . "\n";
		return $location;
	}
);

if ( defined( 'HOOKPUMP_HARNESS_EXTRA_RULE' ) ) {
	add_filter(
		'hookpump_events',
		static function ( array $rules ) {
			$rules['harness_ping'] = array(
				'label'         => 'A harness ping (harness.ping)',
				'hook'          => 'harness_ping',
				'accepted_args' => 1,
				'callback'      => static fn( $n ) => array(
					'event_type' => 'harness.ping',
					'object'     => 'ping:' . $n,
					'payload'    => array( 'n' => $n ),
				),
			);
			return $rules;
		}
	);
}
