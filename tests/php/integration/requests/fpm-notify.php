<?php
/**
 * A page served by PHP-FPM that calls postbag_notify() and answers with the
 * job id and the PID of its worker. After the response the worker streams
 * the job, and when it reaches the recipient POSTBAG_TEST_BLOCK_AT it
 * creates the file POSTBAG_TEST_BLOCKED and sleeps, so a test can kill it
 * mid-stream. Settings come as FastCGI parameters: POSTBAG_TEST_WP_CONFIG,
 * POSTBAG_TEST_CONSTANTS (JSON), POSTBAG_TEST_SOURCE (`user_query`: the
 * subscribers; `memory`: three rows held in the worker).
 *
 * @package Postbag\Tests
 */

foreach ( json_decode( $_SERVER['POSTBAG_TEST_CONSTANTS'], true, 2, JSON_THROW_ON_ERROR ) as $postbag_name => $postbag_value ) {
	define( $postbag_name, $postbag_value );
}
require $_SERVER['POSTBAG_TEST_WP_CONFIG'];
require ABSPATH . 'wp-settings.php';

add_filter(
	'postbag_notify_recipient',
	static function ( $row ) {
		if ( $row['email'] === $_SERVER['POSTBAG_TEST_BLOCK_AT'] ) {
			touch( $_SERVER['POSTBAG_TEST_BLOCKED'] );
			sleep( 120 ); // Until the test kills the worker.
		}
		return $row;
	}
);
$postbag_job = postbag_notify(
	array(
		'recipients' => 'memory' === $_SERVER['POSTBAG_TEST_SOURCE']
			? array( array( 'email' => 'm1@example.net' ), array( 'email' => 'm2@example.net' ), array( 'email' => 'm3@example.net' ) )
			: array( 'user_query' => array( 'role' => 'postbag_reader' ) ),
		'subject'    => 'New post: {{ post.title }}',
		'html'       => '<p>{{ post.title }} is out.</p>',
		'context'    => array( 'post' => array( 'title' => 'Hello' ) ),
		'from'       => 'Blog <news@example.org>',
	)
);
echo is_wp_error( $postbag_job ) ? 'error ' . esc_html( $postbag_job->get_error_message() ) : 'job ' . esc_html( $postbag_job ) . ' by ' . (int) getmypid();
