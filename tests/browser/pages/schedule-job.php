<?php
/**
 * A page of the test site that schedules one notify job for tomorrow 08:00
 * in the site's time zone (postbag_notify()'s send_at): the Scheduled tab's
 * row the browser test reschedules and cancels. Answers its id and subject
 * as JSON; the manifest is uploaded after the response. Served by nginx
 * under /postbag-test/.
 *
 * @package Postbag\Tests
 */

require $_SERVER['POSTBAG_TEST_WP_ROOT'] . '/wp-load.php';

$postbag_subject = 'Held until tomorrow ' . gmdate( 'H:i:s' );
$postbag_job     = postbag_notify(
	array(
		'recipients' => array( array( 'email' => 'held-one@example.net' ), array( 'email' => 'held-two@example.net' ) ),
		'subject'    => $postbag_subject,
		'html'       => '<p>Never sent: the browser test cancels it.</p>',
		'from'       => 'Blog <news@example.org>',
		'send_at'    => 'tomorrow 08:00',
	)
);
header( 'Content-Type: application/json' );
echo wp_json_encode(
	array(
		'job'     => is_wp_error( $postbag_job ) ? null : $postbag_job,
		'error'   => is_wp_error( $postbag_job ) ? $postbag_job->get_error_message() : null,
		'subject' => $postbag_subject,
	)
);
