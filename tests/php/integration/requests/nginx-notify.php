<?php
/**
 * A page served through nginx and PHP-FPM that notifies the users of a role
 * with one postbag_notify() call (`?role=<role>`), or sends `?mails=<n>`
 * single marked mails through wp_mail() (mail n to reader<n>@example.net),
 * and answers with one line: `job <id>`, `error <code>: <message>` or
 * `queued <n>`. Its settings come as FastCGI parameters: POSTBAG_TEST_WP_CONFIG
 * (the generated wp-config.php), POSTBAG_TEST_CONSTANTS (wp-config.php
 * constants, as JSON) and POSTBAG_TEST_REPORTS (a directory).
 *
 * With `?report=<name>`, the worker writes <name>.json into that directory as
 * the last thing it does, after the plugin's work at shutdown (which follows
 * the response): `peak_bytes` (memory_get_peak_usage( true )), `ended_at`
 * (microtime), `pid`, and what the plugin's actions said meanwhile.
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

if ( isset( $_GET['role'] ) ) {
	$postbag_job = postbag_notify(
		array(
			'recipients' => array( 'user_query' => array( 'role' => (string) $_GET['role'] ) ),
			'subject'    => 'New post: {{ post.title }}',
			'html'       => '<p>Hi {{ recipient.name }}, <a href="{{ post.url }}">{{ post.title }}</a> is out.</p>',
			'context'    => array(
				'post' => array(
					'title' => 'A million readers',
					'url'   => 'http://blog.example.org/a-million-readers/',
				),
			),
			'list'       => 'new-posts',
		)
	);
	echo is_wp_error( $postbag_job ) ? 'error ' . $postbag_job->get_error_code() . ': ' . $postbag_job->get_error_message() : 'job ' . $postbag_job;
} else {
	$postbag_queued = 0;
	for ( $postbag_n = 0; $postbag_n < (int) ( $_GET['mails'] ?? 0 ); $postbag_n++ ) {
		$postbag_queued += (int) wp_mail( array( "reader$postbag_n@example.net", 'nonpriority@asynchronous.mail' ), "Mail #$postbag_n", "Hello reader $postbag_n." );
	}
	echo 'queued ', (int) $postbag_queued;
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
	foreach ( array( 'postbag_job_queued', 'postbag_job_uploaded', 'postbag_job_spooled', 'postbag_batch_uploaded', 'postbag_batch_spooled' ) as $action ) {
		add_action(
			$action,
			static function ( ...$args ) use ( &$actions, $action ): void {
				$actions[] = array(
					'action'     => $action,
					'at'         => microtime( true ),
					'peak_bytes' => memory_get_peak_usage( true ),
					'first_arg'  => is_scalar( $args[0] ?? null ) ? $args[0] : null,
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
