<?php
/**
 * One WordPress request in its own PHP process, configured the way a site
 * is (POSTBAG_* constants in wp-config.php): it sends a marked mail, prints
 * what wp_mail() returned, and ends; the plugin uploads on `shutdown`.
 *
 * Usage: php send-marked-mail.php <wp-config.php> <constants as JSON> <recipient>
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' || 4 !== $argc ) {
	fwrite( STDERR, "usage: php send-marked-mail.php <wp-config.php> <constants as JSON> <recipient>\n" );
	exit( 2 );
}
require __DIR__ . '/boot-cli-request.php';

$postbag_queued = wp_mail( array( $argv[3], 'nonpriority@asynchronous.mail' ), 'Sent from a real request', 'Uploaded at shutdown.' );
echo wp_json_encode( array( 'queued' => $postbag_queued ) ), "\n";
