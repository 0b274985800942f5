<?php
/**
 * What the pages served through nginx share (see Postbag_Test_Notify_Site):
 * WordPress booted as the site its FastCGI parameters describe:
 * POSTBAG_TEST_WP_CONFIG (the generated wp-config.php), POSTBAG_TEST_CONSTANTS
 * (wp-config.php constants, as JSON) and POSTBAG_TEST_REPORTS (a directory).
 * Require it from global scope (WordPress defines its globals there).
 *
 * With `?report=<name>`, the worker writes <name>.json into that directory as
 * the last thing it does, after the plugin's work at shutdown (which follows
 * the response): `peak_bytes` (memory_get_peak_usage( true ): what PHP took
 * from the system, counted against memory_limit; it includes chunks a worker
 * kept from its previous request), `peak_used` (memory_get_peak_usage(): this
 * request's own), `ended_at` (microtime), `pid`, and the plugin's job and batch actions meanwhile
 * (`action`, `at`, `peak_bytes`, `first_arg`, `second_arg`).
 *
 * @package Postbag\Tests
 */

foreach ( json_decode( $_SERVER['POSTBAG_TEST_CONSTANTS'], true, 2, JSON_THROW_ON_ERROR ) as $postbag_name => $postbag_value ) {
	define( $postbag_name, $postbag_value );
}
require $_SERVER['POSTBAG_TEST_WP_CONFIG'];
require ABSPATH . 'wp-settings.php';

if ( isset( $_GET['report'] ) && preg_match( '/^[a-z0-9-]{1,64}$/', $_GET['report'] ) ) {
	postbag_test_report_at_the_end( $_SERVER['POSTBAG_TEST_REPORTS'] . '/' . $_GET['report'] . '.json' );
}

/**
 * Writes the report when the worker is done: registered now, after
 * WordPress's shutdown function, and again from there, so it also follows
 * whatever the `shutdown` action registered (the flusher's stragglers).
 *
 * @param string $file Where the JSON goes.
 */
function postbag_test_report_at_the_end( string $file ): void {
	$actions = array();
	foreach ( array( 'postbag_job_queued', 'postbag_job_uploaded', 'postbag_job_spooled', 'postbag_job_failed', 'postbag_batch_uploaded', 'postbag_batch_spooled' ) as $action ) {
		add_action(
			$action,
			static function ( ...$args ) use ( &$actions, $action ): void {
				$actions[] = array(
					'action'     => $action,
					'at'         => microtime( true ),
					'peak_bytes' => memory_get_peak_usage( true ),
					'first_arg'  => is_scalar( $args[0] ?? null ) ? $args[0] : null,
					'second_arg' => is_scalar( $args[1] ?? null ) ? $args[1] : null,
				);
			},
			10,
			9
		);
	}
	register_shutdown_function(
		static function () use ( $file, &$actions ): void {
			register_shutdown_function(
				static function () use ( $file, &$actions ): void {
					$report = array(
						'pid'        => getmypid(),
						'peak_bytes' => memory_get_peak_usage( true ),
						'peak_used'  => memory_get_peak_usage(),
						'ended_at'   => microtime( true ),
						'actions'    => $actions,
					);
					file_put_contents( "$file.tmp", json_encode( $report ) );
					rename( "$file.tmp", $file ); // Whole or absent for the reader.
				}
			);
		}
	);
}
