<?php
/**
 * What the requests on the test network (multisite) share: the usage check,
 * then WordPress loaded as the network's main site through
 * boot-cli-request.php. Require it first, from global scope (WordPress
 * defines its globals there).
 *
 * Usage of each such script: php <script> <wp-config.php> <network.php> <constants as JSON>
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' || 4 !== $argc ) {
	fwrite( STDERR, 'usage: php ' . basename( $argv[0] ) . " <wp-config.php> <network.php> <constants as JSON>\n" );
	exit( 2 );
}
require $argv[2]; // The network's constants (its database, MULTISITE...), none of them a POSTBAG_* one.
$argv = array( $argv[0], $argv[1], $argv[3] ); // phpcs:ignore WordPress.WP.GlobalVariablesOverride -- boot-cli-request.php's arguments.
require __DIR__ . '/boot-cli-request.php';
