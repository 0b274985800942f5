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
foreach ( json_decode( $argv[2], true, 2, JSON_THROW_ON_ERROR ) as $postbag_name => $postbag_value ) {
	define( $postbag_name, $postbag_value );
}
$_SERVER['HTTP_HOST']   = 'blog.example.org';
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REMOTE_ADDR'] = '127.0.0.1';
require $argv[1];
require ABSPATH . 'wp-settings.php';

$postbag_queued = wp_mail( array( $argv[3], 'nonpriority@asynchronous.mail' ), 'Sent from a real request', 'Uploaded at shutdown.' );
echo wp_json_encode( array( 'queued' => $postbag_queued ) ), "\n";
