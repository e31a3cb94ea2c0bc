<?php
/**
 * Must-use plugin of the test site: no mail leaves it, and a redirect is printed (the command
 * line has no Location header to read).
 */

add_filter( 'pre_wp_mail', '__return_true' );
add_filter(
	'wp_redirect',
	static function ( $location ) {
		echo "\n@@REDIRECT@@" . $location . "\n";
		return $location;
	}
);
