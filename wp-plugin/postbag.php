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

require_once __DIR__ . '/includes/autoload.php';

register_activation_hook( __FILE__, array( 'Postbag_Plugin', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'Postbag_Plugin', 'deactivate' ) );

Postbag_Plugin::instance()->init();
