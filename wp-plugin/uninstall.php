<?php
/**
 * Removes everything Postbag stored: cron events, per-user notice
 * dismissals and the spool (batches never uploaded are deleted with it).
 * Postbag keeps no options or transients; settings live in wp-config.php.
 *
 * @package Postbag
 */

if ( ! defined( 'WP_UNINSTALL_PLUGIN' ) ) {
	exit;
}

require_once __DIR__ . '/includes/class-postbag-config.php';
require_once __DIR__ . '/includes/class-postbag-spool.php';
require_once __DIR__ . '/includes/class-postbag-spool-retry.php';
require_once __DIR__ . '/includes/class-postbag-admin.php';

/**
 * Cleans one site (cron and spool may be per site on multisite).
 */
function postbag_uninstall_site() {
	wp_clear_scheduled_hook( Postbag_Spool_Retry::HOOK );
	$spool = new Postbag_Spool( Postbag_Config::from_constants()->get( 'spool_dir' ) );
	$spool->destroy();
}

delete_metadata( 'user', 0, Postbag_Admin::DISMISS_META, '', true );

if ( is_multisite() ) {
	foreach ( get_sites( array( 'fields' => 'ids' ) ) as $postbag_blog_id ) {
		switch_to_blog( $postbag_blog_id );
		postbag_uninstall_site();
		restore_current_blog();
	}
} else {
	postbag_uninstall_site();
}
