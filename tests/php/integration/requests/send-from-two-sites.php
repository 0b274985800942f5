<?php
/**
 * One request on the test network (multisite) in its own PHP process: a
 * marked mail from the main site, then one from the second site after
 * switch_to_blog(), as a network-wide plugin would send them. Prints the two
 * sites' URLs and what wp_mail() returned, as JSON; the plugin uploads on
 * `shutdown`.
 *
 * Usage: php send-from-two-sites.php <wp-config.php> <network.php> <constants as JSON>
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/boot-network-request.php';

$postbag_sent = array();
foreach ( array( 1, 2 ) as $postbag_blog ) {
	switch_to_blog( $postbag_blog );
	$postbag_sent[ home_url() ] = wp_mail( array( "reader$postbag_blog@example.net", 'nonpriority@asynchronous.mail' ), "From site $postbag_blog", 'Hello.' );
	restore_current_blog();
}
echo wp_json_encode( $postbag_sent ), "\n";
