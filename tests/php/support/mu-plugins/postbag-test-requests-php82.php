<?php
/**
 * Plugin Name: Postbag tests: Requests 1.8.1 on PHP 8.2
 * Description: Test harness shim. WordPress 6.1's bundled Requests form-encodes an array body with http_build_query( $data, null, '&' ), which PHP 8.1+ reports as deprecated at run time (loading its classes quietly does not help here); with deprecations turned into exceptions, any POST of form fields would abort a test. Encoding the body the same way first sends the same bytes without the notice.
 *
 * @package Postbag\Tests
 */

add_filter(
	'http_request_args',
	static function ( array $args ): array {
		$method = strtoupper( (string) ( $args['method'] ?? 'GET' ) );
		// GET and HEAD put the body in the query string, which Requests builds itself.
		if ( 'GET' !== $method && 'HEAD' !== $method && ( is_array( $args['body'] ?? null ) || is_object( $args['body'] ?? null ) ) ) {
			$args['body'] = http_build_query( $args['body'], '', '&' );
		}
		return $args;
	},
	PHP_INT_MAX
);
