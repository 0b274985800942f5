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

/**
 * Notifies many recipients with one call: the job is recorded and the call
 * returns; the recipients are read after the response, written to gzip
 * NDJSON part files and uploaded with the job's manifest (readme.txt,
 * "Notify jobs"). Never sent through wp_mail(): a job waits for S3.
 *
 * @param array $args `recipients` (array( 'user_query' => WP_User_Query args ), array( 'callback' =>
 *                    function name, 'args' => array ), or rows / an iterable / a Closure returning one,
 *                    held by this process only), `subject`, `html`, `text`, `context`, `list`, `from`,
 *                    `reply_to`, `headers`, `attachments`, `send_at` (reserved: null).
 * @return string|WP_Error The job id, or an error whose data's `field` names the bad argument.
 */
function postbag_notify( array $args ) {
	return Postbag_Plugin::instance()->jobs()->notify( $args );
}
