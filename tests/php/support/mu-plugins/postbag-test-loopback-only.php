<?php
/**
 * Plugin Name: Postbag tests: loopback only
 * Description: Test harness guard, loaded as a must-use plugin of the throwaway site: the WordPress HTTP API may reach 127.0.0.1 and nothing else (the installer, for one, probes the site's own URL).
 *
 * @package Postbag\Tests
 */

add_filter(
	'pre_http_request',
	static function ( $response, $args, $url ) {
		$host = strtolower( (string) wp_parse_url( $url, PHP_URL_HOST ) );
		if ( in_array( $host, array( '127.0.0.1', 'localhost', '[::1]' ), true ) ) {
			return $response;
		}
		return new WP_Error( 'http_request_failed', sprintf( 'Postbag tests reach only 127.0.0.1, not %s.', $host ) );
	},
	PHP_INT_MAX,
	3
);
