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
 *                    `reply_to`, `headers`, `attachments`, `send_at` (a Unix timestamp, a DateTimeInterface,
 *                    or text: the site's time zone unless it names an offset; past: now; at most 90 days
 *                    ahead), `send_between` (array( $start, $end ), the same kinds of time: the sender spreads
 *                    the job evenly over the window; not with send_at). The job is uploaded at once either
 *                    way; the sender holds it until its time. `list` defaults to 'notifications': every
 *                    recipient gets a signed one-click unsubscribe link, and suppressed ones are left out.
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
 * sent), with `rows`, `dropped`, `suppressed`, `parts`, `parts_uploaded`, `attempts`. Once
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

/**
 * Moves a held notify job to another time: `jobs/<job_id>/schedule.json` is
 * put in the bucket (kept in the spool and retried while S3 is down; a later
 * call wins). The sender never sends a job twice for it.
 *
 * @param string $job_id What postbag_notify() returned.
 * @param array  $when   array( 'send_at' => time or null for now ) or array( 'send_between' => array( $start, $end ) ),
 *                       times as postbag_notify() takes them.
 * @return true|WP_Error True once the request is recorded; an error naming the field (`job_id`,
 *                       `send_at`, `send_between`...) or a spool that cannot be written.
 */
function postbag_reschedule_job( string $job_id, array $when ) {
	return Postbag_Plugin::instance()->schedules()->reschedule( 'job', $job_id, $when );
}

/**
 * Cancels a held batch of scheduled mail (mails queued with X-Postbag-Send-At
 * or the `postbag_mail_send_at` filter; `postbag_batch_scheduled` gives its
 * id): `control/batches/<batch_id>/cancel` is put in the bucket (kept in the
 * spool and retried while S3 is down), and the batch leaves this site's
 * spool if it is still waiting there.
 *
 * @param string $batch_id Batch id.
 * @return true|WP_Error True once the request is recorded; an error for a bad id or a spool that cannot be written.
 */
function postbag_cancel_mail_batch( string $batch_id ) {
	return Postbag_Plugin::instance()->schedules()->cancel_batch( $batch_id );
}

/**
 * Moves a held batch of scheduled mail: `control/batches/<batch_id>/schedule.json`.
 *
 * @param string $batch_id Batch id.
 * @param array  $when     array( 'send_at' => time or null for now ).
 * @return true|WP_Error See postbag_reschedule_job().
 */
function postbag_reschedule_mail_batch( string $batch_id, array $when ) {
	return Postbag_Plugin::instance()->schedules()->reschedule( 'batch', $batch_id, $when );
}

/**
 * What this site scheduled, soonest first, from its own record (the sender is
 * not asked): see Postbag_Schedules::listing().
 *
 * @return array[]
 */
function postbag_scheduled(): array {
	return Postbag_Plugin::instance()->schedules()->listing();
}
