<?php
/**
 * Uninstalls the plugin the way the Plugins screen does, in its own PHP
 * process: WordPress loads without Postbag's main file (an inactive plugin),
 * then uninstall_plugin() runs uninstall.php. Prints what it found.
 *
 * Usage: php uninstall-plugin.php <wp-config.php> <spool dir>
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' || 3 !== $argc ) {
	fwrite( STDERR, "usage: php uninstall-plugin.php <wp-config.php> <spool dir>\n" );
	exit( 2 );
}
define( 'POSTBAG_SPOOL_DIR', $argv[2] );
$_SERVER['HTTP_HOST']   = 'blog.example.org';
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REMOTE_ADDR'] = '127.0.0.1';
// Hooks set before WordPress loads (WP_Hook::build_preinitialized_hooks): Postbag is not active here.
$GLOBALS['wp_filter'] = array(
	'option_active_plugins' => array(
		10 => array(
			array(
				'function'      => static function ( $plugins ) {
					return array_values( array_diff( (array) $plugins, array( 'postbag/postbag.php' ) ) );
				},
				'accepted_args' => 1,
			),
		),
	),
);
require $argv[1];
require ABSPATH . 'wp-settings.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';

$postbag_loaded = class_exists( 'Postbag_Plugin', false );
$postbag_result = uninstall_plugin( 'postbag/postbag.php' );
echo wp_json_encode(
	array(
		'plugin_loaded_before' => $postbag_loaded,
		'uninstalled'          => $postbag_result,
		'spool_left'           => is_dir( $argv[2] ),
	)
), "\n";
