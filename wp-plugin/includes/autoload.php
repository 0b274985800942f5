<?php
/**
 * The plugin's class autoloader, shared by postbag.php and uninstall.php.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Loads `Postbag_Foo_Bar` from includes/class-postbag-foo-bar.php (no composer at run time).
 *
 * @param string $class_name Class being loaded.
 */
function postbag_autoload( $class_name ) {
	if ( 0 !== strpos( $class_name, 'Postbag_' ) ) {
		return;
	}
	$file = __DIR__ . '/class-' . strtolower( str_replace( '_', '-', $class_name ) ) . '.php';
	if ( is_file( $file ) ) {
		require $file;
	}
}
spl_autoload_register( 'postbag_autoload' );
