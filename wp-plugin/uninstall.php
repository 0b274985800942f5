<?php
/**
 * Removes everything Postbag stored (see Postbag_Plugin::uninstall()).
 *
 * @package Postbag
 */

if ( ! defined( 'WP_UNINSTALL_PLUGIN' ) ) {
	exit;
}

// WordPress does not load the plugin's main file to uninstall it: load the classes needed.
foreach ( array( 'plugin', 'config', 'spool', 'spool-retry', 'admin' ) as $postbag_class ) {
	require_once __DIR__ . "/includes/class-postbag-$postbag_class.php";
}
Postbag_Plugin::uninstall();
