<?php
/**
 * Removes everything Postbag stored (see Postbag_Plugin::uninstall()).
 *
 * @package Postbag
 */

if ( ! defined( 'WP_UNINSTALL_PLUGIN' ) ) {
	exit;
}

// WordPress does not load the plugin's main file to uninstall it.
require_once __DIR__ . '/includes/autoload.php';
Postbag_Plugin::uninstall();
