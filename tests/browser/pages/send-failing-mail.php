<?php
/**
 * A page of the test site that sends one non-priority mail the sender will
 * refuse (its From's domain is no SES identity yet): the email log's failed
 * row the browser test resends. Served by nginx under /postbag-test/.
 *
 * @package Postbag\Tests
 */

require $_SERVER['POSTBAG_TEST_WP_ROOT'] . '/wp-load.php';

$postbag_subject = 'Failing until fixed ' . gmdate( 'H:i:s' );
$postbag_queued  = wp_mail( array( 'reader@example.net', 'nonpriority@asynchronous.mail' ), $postbag_subject, 'Sent again once the cause is fixed.', array( 'From: Alerts <alerts@unverified.example>' ) );
header( 'Content-Type: application/json' );
echo wp_json_encode(
	array(
		'queued'  => $postbag_queued,
		'subject' => $postbag_subject,
	)
);
