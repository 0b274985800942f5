<?php
/**
 * A page served by PHP-FPM that queues many marked mails and answers with
 * how many and the PID of the worker that served it. Its settings come as
 * FastCGI parameters: POSTBAG_TEST_WP_CONFIG (the generated wp-config.php),
 * POSTBAG_TEST_CONSTANTS (wp-config.php constants, as JSON) and
 * POSTBAG_TEST_MAILS. The plugin spools and uploads on `shutdown`.
 * Mail n goes to reader<n>@example.net with the subject "Mail #<n>".
 *
 * @package Postbag\Tests
 */

foreach ( json_decode( $_SERVER['POSTBAG_TEST_CONSTANTS'], true, 2, JSON_THROW_ON_ERROR ) as $postbag_name => $postbag_value ) {
	define( $postbag_name, $postbag_value );
}
require $_SERVER['POSTBAG_TEST_WP_CONFIG'];
require ABSPATH . 'wp-settings.php';

$postbag_queued = 0;
for ( $postbag_n = 0; $postbag_n < (int) $_SERVER['POSTBAG_TEST_MAILS']; $postbag_n++ ) {
	$postbag_queued += (int) wp_mail( array( "reader$postbag_n@example.net", 'nonpriority@asynchronous.mail' ), "Mail #$postbag_n", "Hello reader $postbag_n." );
}
echo 'queued ', (int) $postbag_queued, ' by ', (int) getmypid();
