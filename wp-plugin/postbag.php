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

/**
 * How far a notify job has got. While the job is in this site's spool, the
 * plugin's own view (`source` 'spool'): `state` 'streaming' (its recipients
 * are being read), 'uploading', 'waiting' (an upload or its source failed:
 * retried at `next_attempt_at`, `last_error` says why) or 'failed' (never
 * sent), with `rows`, `dropped`, `parts`, `parts_uploaded`, `attempts`. Once
 * its manifest is in the bucket, the sender's `jobs/<job_id>/status.json`
 * (`source` 'sender'; `state` 'queued', 'sending', 'done' or 'cancelled', with
 * the counts of docs/job-format.md), or `state` 'uploaded' while the sender
 * has written none (the site may not list the bucket, so an id it never
 * queued reads the same). A job dropped from the spool by
 * postbag_cancel_job() is `state` 'cancelled', `source` 'spool'. Every answer
 * has `job_id` and `cancel` (null, 'requested', 'stored' or 'dropped').
 *
 * Values come from the bucket: escape them on output.
 *
 * @param string $job_id What postbag_notify() returned.
 * @return array|WP_Error An error for an invalid id (`postbag_invalid_job_id`), S3 that
 *                        cannot be read (`postbag_s3_unavailable`) or a damaged status.
 */
function postbag_job_status( string $job_id ) {
	return Postbag_Plugin::instance()->jobs()->status( $job_id );
}

/**
 * Cancels a notify job. Still in the spool: dropped there, its manifest never
 * uploaded, so nobody gets it. Already uploaded (or its manifest's upload was
 * tried): `jobs/<job_id>/cancel` is put in the bucket and the sender stops
 * before its next chunk (mails already sent stay sent); when S3 fails, the
 * cancel waits in the spool and is retried like a batch. Fires
 * `postbag_job_cancelled` once it took effect.
 *
 * @param string $job_id What postbag_notify() returned.
 * @return true|WP_Error True once the cancel is recorded; an error for an invalid id
 *                       (`postbag_invalid_job_id`) or a spool that cannot be written.
 */
function postbag_cancel_job( string $job_id ) {
	return Postbag_Plugin::instance()->jobs()->cancel( $job_id );
}
