<?php
/**
 * A page served by PHP-FPM that sends a marked mail. Its settings come as
 * FastCGI parameters: POSTBAG_TEST_WP_CONFIG (the generated wp-config.php)
 * and POSTBAG_TEST_CONSTANTS (wp-config.php constants, as JSON). The plugin
 * uploads on `shutdown`, after fastcgi_finish_request().
 *
 * @package Postbag\Tests
 */

foreach ( json_decode( $_SERVER['POSTBAG_TEST_CONSTANTS'], true, 2, JSON_THROW_ON_ERROR ) as $postbag_name => $postbag_value ) {
	define( $postbag_name, $postbag_value );
}
require $_SERVER['POSTBAG_TEST_WP_CONFIG'];
require ABSPATH . 'wp-settings.php';

$postbag_queued = wp_mail( array( 'reader@example.net', 'nonpriority@asynchronous.mail' ), 'Sent from a page', 'Uploaded after the page was delivered.' );
echo $postbag_queued ? 'queued' : 'not queued';
