<?php
/**
 * Installs WordPress headlessly and activates the plugin; run by
 * Postbag_Test_WordPress in a child process because it needs WP_INSTALLING.
 *
 * Usage: php install-wordpress.php <wp-config.php> <site url> <admin email> <plugin>
 * Exit status: 0 installed with the plugin active, 3 installed without it
 * (the reason on stderr), anything else: the install failed.
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' || 5 !== $argc ) {
	fwrite( STDERR, "usage: php install-wordpress.php <wp-config.php> <site url> <admin email> <plugin>\n" );
	exit( 2 );
}
list( , $postbag_config, $postbag_site_url, $postbag_admin_email, $postbag_plugin ) = $argv;

$_SERVER['HTTP_HOST']   = (string) parse_url( $postbag_site_url, PHP_URL_HOST );
$_SERVER['REQUEST_URI'] = '/';
define( 'WP_INSTALLING', true );
require $postbag_config;
require __DIR__ . '/install-common.php';

postbag_install_site( 'Postbag test site', $postbag_admin_email );
wp_installing( false );

if ( ! is_file( WP_PLUGIN_DIR . '/' . $postbag_plugin ) ) {
	fwrite( STDERR, WP_PLUGIN_DIR . "/$postbag_plugin does not exist yet\n" );
	exit( 3 );
}
// A fatal error while the plugin loads (a class not written yet) still
// leaves an installed site: report it as "installed without the plugin".
register_shutdown_function(
	static function () {
		$error = error_get_last();
		if ( null !== $error && in_array( $error['type'], array( E_ERROR, E_PARSE, E_COMPILE_ERROR, E_CORE_ERROR ), true ) ) {
			fwrite( STDERR, "activating the plugin failed: {$error['message']} at {$error['file']}:{$error['line']}\n" );
			exit( 3 );
		}
	}
);
try {
	$postbag_activated = activate_plugin( $postbag_plugin );
} catch ( Throwable $postbag_error ) {
	$postbag_activated = new WP_Error( 'exception', get_class( $postbag_error ) . ': ' . $postbag_error->getMessage() . ' at ' . $postbag_error->getFile() . ':' . $postbag_error->getLine() );
}
if ( is_wp_error( $postbag_activated ) ) {
	fwrite( STDERR, "activating $postbag_plugin failed: " . $postbag_activated->get_error_message() . "\n" );
	exit( 3 );
}
exit( 0 );
