<?php
/**
 * One WordPress request in its own PHP process that notifies the users of a
 * role and, as shutdown would after the response, streams the job, under
 * whatever memory_limit the caller gives PHP (-d memory_limit=64M). Prints
 * one JSON line: the job id, what the streaming did, its time and PHP's
 * peak memory.
 *
 * Usage: php -d memory_limit=64M stream-notify-job.php <wp-config.php> <constants as JSON> <role>
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' || 4 !== $argc ) {
	fwrite( STDERR, "usage: php stream-notify-job.php <wp-config.php> <constants as JSON> <role>\n" );
	exit( 2 );
}
require __DIR__ . '/boot-cli-request.php';

$postbag_job = postbag_notify(
	array(
		'recipients' => array( 'user_query' => array( 'role' => $argv[3] ) ),
		'subject'    => 'New post: {{ post.title }}',
		'html'       => '<p>Hi {{ recipient.name }}, {{ post.title }} is out.</p>',
		'context'    => array( 'post' => array( 'title' => 'Hello' ) ),
		'from'       => 'Blog <news@example.org>',
	)
);
if ( is_wp_error( $postbag_job ) ) {
	fwrite( STDERR, $postbag_job->get_error_message() . "\n" );
	exit( 1 );
}
$postbag_base  = memory_get_usage();
$postbag_start = microtime( true );
$postbag_done  = Postbag_Plugin::instance()->jobs()->stream_pending();
echo json_encode(
	array(
		'job_id'          => $postbag_job,
		'summary'         => $postbag_done,
		'seconds'         => microtime( true ) - $postbag_start,
		'memory_limit'    => ini_get( 'memory_limit' ),
		'base_bytes'      => $postbag_base,
		'peak_bytes'      => memory_get_peak_usage(),
		'peak_real_bytes' => memory_get_peak_usage( true ),
	)
), "\n";
