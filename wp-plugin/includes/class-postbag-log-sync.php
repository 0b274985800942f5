<?php
/**
 * Brings the sender's outcomes into the email log.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Every few minutes (HOOK, and on demand from the Postbag screen) reads,
 * with signed GETs and never a listing, the objects the sender writes for
 * what the log still waits on:
 *
 * - `receipts/<batch_id>[.redrive-N][.part-N].json` (chalicelib/outcome.py):
 *   each mail's status, SES MessageId or reason; a mail handed on to a
 *   continuation is looked for in the next part's receipt. A batch the
 *   sender quarantined has, at its receipt's key, the quarantine's error
 *   document (`quarantined_as`, `field`, `reason`, `error`).
 * - `jobs/<job_id>/status.json` through Postbag_Jobs::status(): a job's state
 *   and counts.
 * - `status/control/batches/<batch_id>.json` (chalicelib/control.py), for a
 *   held batch this site asked to cancel or move: what the sender did
 *   (`outcome` cancelled, rescheduled, too_late or superseded). Until it is
 *   written the batch's receipt is read too: a batch cancelled or sent
 *   settles its mails either way.
 * - `status/redrive/<uuid>.json` (chalicelib/redrive_request.py), for a
 *   resend: the receipt the re-drive writes (from `queued`), or nothing
 *   re-driven (`nothing_failed`, the mail in `not_failed`): failed again,
 *   with the sender's word.
 *
 * A receipt not written yet answers 404 (or 403 where the site may not list
 * the bucket); the row waits for the next run.
 */
final class Postbag_Log_Sync {

	const HOOK = 'postbag_sync_log';

	const SCHEDULE = 'postbag_five_minutes';

	/** Site option: when the last sync ended (Unix time). */
	const SYNCED_OPTION = 'postbag_log_synced_at';

	/** Receipts read per run: each is one GET with its own timeout. */
	const MAX_RECEIPTS = 50;

	const MAX_JOBS = 20;

	/** Receipt status => log status; the others (in_progress, retry_later, unknown) keep waiting. */
	const SETTLED = array(
		'sent'       => 'sent',
		'duplicate'  => 'sent',
		'failed'     => 'failed',
		'paused'     => 'failed',
		'suppressed' => 'suppressed',
		'cancelled'  => 'cancelled',
	);

	/** Where the sender writes what became of a cancel or a move (`<batches|jobs>/<id>.json`). */
	const CONTROL_PREFIX = 'status/control/';

	/** Where the sender writes what a re-drive request did (`<uuid>.json`). */
	const REDRIVE_PREFIX = 'status/redrive/';

	/** A job's `state` => log status. */
	const JOB_STATES = array(
		'queued'    => 'uploaded',
		'uploaded'  => 'uploaded',
		'sending'   => 'uploaded',
		'scheduled' => 'scheduled',
		'done'      => 'sent',
		'cancelled' => 'cancelled',
	);

	/** The counts of a job status document kept in the log. */
	const JOB_COUNTS = array( 'recipients', 'sent', 'duplicate', 'failed', 'suppressed', 'cancelled', 'remaining', 'rate', 'started_at', 'estimated_end', 'finished_at' );

	/** @var Postbag_Mail_Log */
	private $log;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Jobs */
	private $jobs;

	/** @var callable(): int */
	private $clock;

	/** @var int Receipts read per run. */
	private $max_receipts;

	/**
	 * @param Postbag_Mail_Log       $log      The log.
	 * @param Postbag_Batch_Uploader $uploader Reads objects (signed GET).
	 * @param Postbag_Jobs           $jobs     Job status (spool or `status.json`).
	 * @param callable(): int        $clock    Unix time.
	 * @param int                    $max_receipts Receipts read per run.
	 */
	public function __construct( Postbag_Mail_Log $log, Postbag_Batch_Uploader $uploader, Postbag_Jobs $jobs, callable $clock, int $max_receipts = self::MAX_RECEIPTS ) {
		$this->max_receipts = $max_receipts;
		$this->log      = $log;
		$this->uploader = $uploader;
		$this->jobs     = $jobs;
		$this->clock    = $clock;
	}

	public function init(): void {
		add_filter( 'cron_schedules', array( self::class, 'add_schedule' ) );
		add_action( self::HOOK, array( $this, 'run' ) );
	}

	public function remove(): void {
		remove_filter( 'cron_schedules', array( self::class, 'add_schedule' ) );
		remove_action( self::HOOK, array( $this, 'run' ) );
	}

	/**
	 * @param array $schedules WP-Cron schedules.
	 * @return array
	 */
	public static function add_schedule( $schedules ) {
		$schedules[ self::SCHEDULE ] = array(
			'interval' => 5 * MINUTE_IN_SECONDS,
			'display'  => __( 'Every five minutes (Postbag)', 'postbag' ),
		);
		return $schedules;
	}

	public static function ensure_scheduled(): void {
		add_filter( 'cron_schedules', array( self::class, 'add_schedule' ) );
		if ( ! wp_next_scheduled( self::HOOK ) ) {
			wp_schedule_event( time() + 5 * MINUTE_IN_SECONDS, self::SCHEDULE, self::HOOK );
		}
	}

	/**
	 * The receipt of a batch, of one of its re-drives or continuation parts
	 * (chalicelib.outcome.object_name).
	 *
	 * @param string $batch_id Batch id.
	 * @param int    $redrive  Re-drive count.
	 * @param int    $part     Continuation part.
	 */
	public static function receipt_key( string $batch_id, int $redrive = 0, int $part = 0 ): string {
		return 'receipts/' . $batch_id . ( $redrive ? ".redrive-$redrive" : '' ) . ( $part ? ".part-$part" : '' ) . '.json';
	}

	/**
	 * One run: receipts of uploaded mails, then running jobs.
	 *
	 * @return array{receipts: int, mails: int, jobs: int, errors: string[]} Receipts read, rows updated, errors.
	 */
	public function run(): array {
		$summary = array(
			'receipts' => 0,
			'mails'    => 0,
			'jobs'     => 0,
			'errors'   => array(),
		);
		$this->sync_mails( $summary );
		$this->sync_jobs( $summary );
		update_site_option( self::SYNCED_OPTION, ( $this->clock )() );
		return $summary;
	}

	/**
	 * @param array $summary See run(); updated.
	 */
	private function sync_mails( array &$summary ): void {
		$by_key = array();
		$batch  = array();
		foreach ( $this->log->unsettled( 'mail', $this->max_receipts * 25 ) as $row ) {
			if ( '' !== $row['receipt_key'] ) {
				$by_key[ $row['receipt_key'] ][] = $row['mail_id'];
				$batch[ $row['receipt_key'] ]    = $row['batch_id'];
			}
		}
		foreach ( array_slice( $by_key, 0, $this->max_receipts, true ) as $key => $mail_ids ) {
			$key      = (string) $key;
			$batch_id = (string) $batch[ $key ];
			$doc      = $this->read( $key, $summary );
			if ( null === $doc && 0 === strpos( $key, self::CONTROL_PREFIX ) ) {
				// No result yet: the batch may have been sent, or cancelled from the CLI, all the same.
				$key = self::receipt_key( $batch_id );
				$doc = $this->read( $key, $summary );
			}
			if ( false === $doc ) {
				return; // S3 is failing: the next run tries again.
			}
			if ( null === $doc ) {
				$this->log->touch( $mail_ids ); // Not yet: to the back of the line.
				continue;
			}
			++$summary['receipts'];
			$summary['mails'] += $this->apply_document( $key, $doc, $mail_ids, $batch_id );
		}
	}

	/**
	 * @param string   $key      What was read.
	 * @param array    $doc      Its document.
	 * @param string[] $mail_ids The log's mails waiting on it.
	 * @param string   $batch_id Their batch.
	 * @return int Rows updated.
	 */
	private function apply_document( string $key, array $doc, array $mail_ids, string $batch_id ): int {
		if ( 0 === strpos( $key, self::CONTROL_PREFIX ) ) {
			return $this->apply_control( $doc, $mail_ids, $batch_id );
		}
		if ( 0 === strpos( $key, self::REDRIVE_PREFIX ) ) {
			return $this->apply_redrive( $doc, $mail_ids );
		}
		return $this->apply_receipt( $key, $doc, $mail_ids );
	}

	/**
	 * A held batch's cancel or move, as the sender applied it.
	 *
	 * @param array    $result   `status/control/batches/<id>.json`.
	 * @param string[] $mail_ids Its mails in the log.
	 * @param string   $batch_id The batch.
	 * @return int Rows updated.
	 */
	private function apply_control( array $result, array $mail_ids, string $batch_id ): int {
		$receipt = array( 'receipt_key' => self::receipt_key( $batch_id ) );
		$send_at = is_string( $result['send_at'] ?? null ) ? $result['send_at'] : null;
		switch ( (string) ( $result['outcome'] ?? '' ) ) {
			case 'cancelled':
				return $this->log->set_statuses( $mail_ids, 'cancelled', __( 'Cancelled while held: never sent.', 'postbag' ), $receipt );
			case 'rescheduled':
				/* translators: %s: a time in UTC */
				$reason = null === $send_at ? __( 'Moved: sent now.', 'postbag' ) : sprintf( __( 'Held by the sender until %s (UTC).', 'postbag' ), $send_at );
				return $this->log->set_statuses( $mail_ids, null === $send_at ? 'uploaded' : 'scheduled', $reason, $receipt + array( 'due_at' => $send_at ) );
			case 'too_late':
				return $this->log->set_statuses( $mail_ids, 'uploaded', __( 'The request came too late: the sender had already released the batch.', 'postbag' ), $receipt + array( 'due_at' => null ) );
			default: // superseded (a newer request decides), or a document this version does not know.
				return $this->log->set_statuses( $mail_ids, 'scheduled', __( 'A newer request decides when it is sent.', 'postbag' ), $receipt );
		}
	}

	/**
	 * A resend, as the sender handled it.
	 *
	 * @param array    $result   `status/redrive/<uuid>.json`.
	 * @param string[] $mail_ids The mails it was asked for, and those re-driven with them.
	 * @return int Rows updated.
	 */
	private function apply_redrive( array $result, array $mail_ids ): int {
		$not_failed = array_map( 'strval', (array) ( $result['not_failed'] ?? array() ) );
		$receipt    = null;
		foreach ( (array) ( $result['queued'] ?? array() ) as $queued ) {
			if ( preg_match( '#^queue/([A-Za-z0-9][A-Za-z0-9._-]*?)\.redrive-(\d+)\.json$#', (string) $queued, $m ) ) {
				$receipt = self::receipt_key( $m[1], (int) $m[2] );
			}
		}
		$redriven = null === $receipt || 'redriven' !== ( $result['state'] ?? '' ) ? array() : array_diff( $mail_ids, $not_failed );
		$updated  = $redriven ? $this->log->set_statuses( $redriven, 'uploaded', __( 'Sent again: waiting for its receipt.', 'postbag' ), array( 'receipt_key' => $receipt ) ) : 0;
		$left     = array_diff( $mail_ids, $redriven );
		if ( $left ) {
			$updated += $this->log->set_statuses( $left, 'failed', __( 'Not sent again: the sender found no failed copy of it to send (re-driven already, or the copy expired).', 'postbag' ) );
		}
		return $updated;
	}

	/**
	 * @param string $key     Object key.
	 * @param array  $summary See run(); errors added.
	 * @return array|null|false The document; null when not written yet; false on an S3 failure.
	 */
	private function read( string $key, array &$summary ) {
		$result = $this->uploader->get( $key );
		if ( $result->ok ) {
			$doc = json_decode( $result->body, true );
			if ( is_array( $doc ) ) {
				return $doc;
			}
			$summary['errors'][] = sprintf( '%s is not JSON.', $key );
			return null;
		}
		// Not written yet: 404, or 403 AccessDenied where the site may not list the bucket.
		if ( 404 === $result->status || ( 403 === $result->status && preg_match( '/^HTTP 403 AccessDenied\b/', $result->error ) ) ) {
			return null;
		}
		$summary['errors'][] = sprintf( 'Cannot read %s: %s', $key, $result->error );
		return false;
	}

	/**
	 * @param string   $key      The receipt's key.
	 * @param array    $receipt  The receipt (or a quarantine's error document).
	 * @param string[] $mail_ids The log's mails waiting on it.
	 * @return int Rows updated.
	 */
	private function apply_receipt( string $key, array $receipt, array $mail_ids ): int {
		if ( isset( $receipt['quarantined_as'] ) ) {
			return $this->log->set_statuses( $mail_ids, 'quarantined', sprintf( '%s (%s)', (string) ( $receipt['error'] ?? '' ), (string) $receipt['quarantined_as'] ) );
		}
		$waiting = array_flip( $mail_ids );
		$updated = 0;
		foreach ( (array) ( $receipt['mails'] ?? array() ) as $entry ) {
			$id = is_array( $entry ) ? (string) ( $entry['mail_id'] ?? '' ) : '';
			if ( ! isset( $waiting[ $id ] ) ) {
				continue;
			}
			$updated += $this->apply_entry( $key, $receipt, $entry );
		}
		return $updated;
	}

	/**
	 * @param string $key     The receipt's key.
	 * @param array  $receipt The receipt.
	 * @param array  $entry   One mail's entry: mail_id, status, message_id or reason.
	 * @return int Rows updated.
	 */
	private function apply_entry( string $key, array $receipt, array $entry ): int {
		$status = (string) ( $entry['status'] ?? '' );
		$reason = (string) ( $entry['reason'] ?? '' );
		if ( isset( self::SETTLED[ $status ] ) ) {
			$fields = array( 'receipt_key' => $key );
			if ( isset( $entry['message_id'] ) ) {
				$fields['message_id'] = (string) $entry['message_id'];
			}
			return $this->log->set_statuses( array( $entry['mail_id'] ), self::SETTLED[ $status ], 'paused' === $status ? "paused: $reason" : $reason, $fields );
		}
		if ( 'handed_on' === $status ) {
			// Sent by a continuation, whose receipt is the next part's.
			$next = self::receipt_key( (string) ( $receipt['batch_id'] ?? '' ), (int) ( $receipt['redrive'] ?? 0 ), (int) ( $receipt['part'] ?? 0 ) + 1 );
			return $this->log->set_statuses( array( $entry['mail_id'] ), 'uploaded', '', array( 'receipt_key' => $next ) );
		}
		// in_progress, retry_later, unknown: the batch is retried and its receipt rewritten.
		return $this->log->set_statuses( array( $entry['mail_id'] ), 'uploaded', $status . ( '' === $reason ? '' : ": $reason" ) );
	}

	/**
	 * @param array $summary See run(); updated.
	 */
	private function sync_jobs( array &$summary ): void {
		foreach ( $this->log->unsettled( 'job', self::MAX_JOBS ) as $row ) {
			$status = $this->jobs->status( $row['mail_id'] );
			if ( is_wp_error( $status ) ) {
				$summary['errors'][] = $status->get_error_message();
				$this->log->touch( array( $row['mail_id'] ) );
				continue;
			}
			$state = (string) ( $status['state'] ?? '' );
			if ( 'sender' !== ( $status['source'] ?? '' ) || ! isset( self::JOB_STATES[ $state ] ) ) {
				// Still the spool's (streaming, uploading, waiting): its own events say so. To the back of the line.
				$this->log->touch( array( $row['mail_id'] ) );
				continue;
			}
			$counts = array_intersect_key( $status, array_flip( self::JOB_COUNTS ) );
			$this->log->set_status( $row['mail_id'], self::JOB_STATES[ $state ], '', $counts ? array( 'counts' => $counts ) : array() );
			++$summary['jobs'];
		}
	}
}
