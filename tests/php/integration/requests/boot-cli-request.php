<?php
/**
 * What the php-cli requests share: WordPress loaded as a site whose
 * wp-config.php defines the given constants. Require it from global scope
 * (WordPress defines its globals there) once the arguments are checked:
 * $argv[1] is the generated wp-config.php, $argv[2] the constants as JSON.
 *
 * @package Postbag\Tests
 */

foreach ( json_decode( $argv[2], true, 2, JSON_THROW_ON_ERROR ) as $postbag_name => $postbag_value ) {
	define( $postbag_name, $postbag_value );
}
$_SERVER['HTTP_HOST']   = 'blog.example.org';
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REMOTE_ADDR'] = '127.0.0.1';
require $argv[1];
require ABSPATH . 'wp-settings.php';
