<?php
/**
 * What install-wordpress.php and install-network.php share: WordPress loaded
 * (once they have set $_SERVER, WP_INSTALLING if needed and required
 * wp-config.php), no mail to the new admin, the installer's functions.
 * Require it from global scope: wp-settings.php defines its globals there.
 *
 * @package Postbag\Tests
 */

require ABSPATH . 'wp-settings.php';
require __DIR__ . '/autoload.php';
Postbag_Test_WordPress::load_requests_quietly();

/**
 * The installer would mail the new admin; nothing here should send mail.
 */
function wp_new_blog_notification() {
}

require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';

/**
 * Runs wp_install() with an admin named "admin" and a random password; exits
 * with status 1 (the reason on stderr) if it did not create that admin.
 *
 * @param string $title       Site title.
 * @param string $admin_email The admin's email address.
 */
function postbag_install_site( string $title, string $admin_email ): void {
	$result = wp_install( $title, 'admin', $admin_email, false, '', wp_generate_password( 24 ) );
	if ( empty( $result['user_id'] ) ) {
		fwrite( STDERR, "wp_install() did not create the admin user\n" );
		exit( 1 );
	}
}
