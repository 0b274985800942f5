<?php
/**
 * Plugin Name:       Postbag
 * Description:       Sends non-priority mail without making anyone wait: queued during the request, uploaded to S3 after the response, sent by Amazon SES.
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.0
 * Author:            The Postbag contributors
 * License:           GPLv2 or later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       postbag
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

define( 'POSTBAG_VERSION', '0.1.0' );
define( 'POSTBAG_PLUGIN_FILE', __FILE__ );

/**
 * Loads `Postbag_Foo_Bar` from includes/class-postbag-foo-bar.php (no composer at run time).
 *
 * @param string $class_name Class being loaded.
 */
function postbag_autoload( $class_name ) {
	if ( 0 !== strpos( $class_name, 'Postbag_' ) ) {
		return;
	}
	$file = __DIR__ . '/includes/class-' . strtolower( str_replace( '_', '-', $class_name ) ) . '.php';
	if ( is_file( $file ) ) {
		require $file;
	}
}
spl_autoload_register( 'postbag_autoload' );

register_activation_hook( __FILE__, array( 'Postbag_Plugin', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'Postbag_Plugin', 'deactivate' ) );

Postbag_Plugin::instance()->init();
