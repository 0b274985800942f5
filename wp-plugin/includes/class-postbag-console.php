<?php
/**
 * What the Postbag screen and the REST API both do.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The service behind the screen (Postbag_Screen) and `postbag/v1`
 * (Postbag_Rest): both are thin clients of these methods, so a script sees
 * exactly what the screen shows. Capability checks are the callers'.
 */
final class Postbag_Console {

	/** Where the sender writes what it last saw of the SES account. */
	const ACCOUNT_KEY = 'status/account.json';

	/** Where the sender writes SES's delivery feedback per day and the 7-day rates (docs/suppression.md). */
	const FEEDBACK_KEY = 'status/feedback.json';

	/** What the Overview takes from the feedback document's days. */
	const FEEDBACK_COUNTS = array( 'delivered', 'bounced', 'complained' );

	/** Where a resend request goes; the sender re-drives it (chalicelib/redrive.py). */
	const REDRIVE_PREFIX = 'requests/redrive/';

	/** @var Postbag_Plugin */
	private $plugin;

	/** @var Postbag_Mail_Log */
	private $log;

	/** @var Postbag_Log_Sync */
	private $sync;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Plugin         $plugin   Settings, spool, jobs, retry.
	 * @param Postbag_Mail_Log       $log      The email log.
	 * @param Postbag_Log_Sync       $sync     Reads the sender's outcomes.
	 * @param Postbag_Batch_Uploader $uploader Reads and puts objects.
	 * @param callable(): int        $clock    Unix time.
	 */
	public function __construct( Postbag_Plugin $plugin, Postbag_Mail_Log $log, Postbag_Log_Sync $sync, Postbag_Batch_Uploader $uploader, callable $clock ) {
		$this->plugin   = $plugin;
		$this->log      = $log;
		$this->sync     = $sync;
		$this->uploader = $uploader;
		$this->clock    = $clock;
	}

	/**
	 * The Overview: configuration, the SES account as the sender saw it,
	 * counts for 24 hours and 7 days (the log's; delivered, bounced and
	 * complained from the sender's `status/feedback.json`: today's day and
	 * the last 7, UTC), the 7-day bounce and complaint rates, running jobs,
	 * the last sync.
	 */
	public function status(): array {
		$now = ( $this->clock )();
		list( $account, $reachable, $error ) = $this->document( self::ACCOUNT_KEY );
		list( $feedback )                    = $reachable ? $this->document( self::FEEDBACK_KEY ) : array( null );
		$counts                              = array(
			'24h' => $this->log->counts( $now - DAY_IN_SECONDS ),
			'7d'  => $this->log->counts( $now - 7 * DAY_IN_SECONDS ),
		);
		foreach ( array(
			'24h' => 1,
			'7d'  => 7,
		) as $span => $days ) {
			$counts[ $span ] = array_merge( $counts[ $span ], self::feedback_counts( $feedback, $now, $days ) );
		}
		return array(
			'config'    => $this->config_check( $reachable, $error ),
			'account'   => $account,
			'counts'    => $counts,
			'rates'     => array(
				'bounce_7d'    => is_numeric( $feedback['bounce_rate_7d'] ?? null ) ? (float) $feedback['bounce_rate_7d'] : null,
				'complaint_7d' => is_numeric( $feedback['complaint_rate_7d'] ?? null ) ? (float) $feedback['complaint_rate_7d'] : null,
				'generated_at' => is_string( $feedback['generated_at'] ?? null ) ? $feedback['generated_at'] : null,
			),
			'jobs'      => $this->running_jobs(),
			'synced_at' => self::time_or_null( (int) get_site_option( Postbag_Log_Sync::SYNCED_OPTION, 0 ) ),
		);
	}

	/**
	 * Delivered, bounced and complained over the last `$days` days (UTC dates, today's included).
	 *
	 * @param array|null $feedback `status/feedback.json`, or null.
	 * @param int        $now      Unix time.
	 * @param int        $days     1 or 7.
	 * @return array<string, int>
	 */
	private static function feedback_counts( ?array $feedback, int $now, int $days ): array {
		$counts = array_fill_keys( self::FEEDBACK_COUNTS, 0 );
		$since  = gmdate( 'Y-m-d', $now - ( $days - 1 ) * DAY_IN_SECONDS );
		foreach ( (array) ( $feedback['days'] ?? array() ) as $day ) {
			if ( ! is_array( $day ) || ! is_string( $day['date'] ?? null ) || $day['date'] < $since ) {
				continue; // One odd day never spoils the others.
			}
			foreach ( self::FEEDBACK_COUNTS as $name ) {
				$counts[ $name ] += is_int( $day[ $name ] ?? null ) ? $day[ $name ] : 0;
			}
		}
		return $counts;
	}

	/**
	 * A document the sender writes under `status/`, read with a signed GET: also the check that the bucket answers.
	 *
	 * @param string $key Object key.
	 * @return array{0: array|null, 1: bool, 2: string} The document (null when absent), whether S3 answered, the error.
	 */
	private function document( string $key ): array {
		if ( ! $this->plugin->config()->is_configured() ) {
			return array( null, false, 'POSTBAG_BUCKET is not defined in wp-config.php' );
		}
		$result = $this->uploader->get( $key );
		if ( $result->ok ) {
			$doc = json_decode( $result->body, true );
			return array( is_array( $doc ) ? $doc : null, true, '' );
		}
		// Not written yet (404; 403 AccessDenied where the site may not list): S3 answered all the same.
		$answered = 404 === $result->status || ( 403 === $result->status && preg_match( '/^HTTP 403 AccessDenied\b/', $result->error ) );
		return array( null, (bool) $answered, $answered ? '' : $result->error );
	}

	/**
	 * @param bool   $reachable Whether the bucket answered a signed GET.
	 * @param string $error     Why not.
	 */
	private function config_check( bool $reachable, string $error ): array {
		$config = $this->plugin->config();
		$spool  = $this->plugin->spool();
		$states = $spool->states();
		$admin  = $this->plugin->admin();
		return array(
			'configured'       => $config->is_configured(),
			'credentials'      => $admin->credentials_source(),
			'from'             => $admin->default_from_source(),
			'from_allowed'     => $admin->default_from_allowed(),
			'bucket'           => $config->get( 'bucket' ),
			'region'           => $config->get( 'region' ),
			'endpoint'         => $config->get( 'endpoint' ),
			'bucket_reachable' => $reachable,
			'bucket_error'     => $error,
			'allowed_senders'  => $config->get( 'allowed_senders' ),
			'spool_dir'        => $spool->dir(),
			'spool_problems'   => array_values( $spool->problems() ),
			'spooled_batches'  => count( $states ),
			'spooled_mails'    => (int) array_sum( array_column( $states, 'mails' ) ),
			'log_days'         => $this->log->retention_days(),
		);
	}

	/** Jobs the sender is still on, with progress (0..1) and ETA. */
	private function running_jobs(): array {
		$jobs = array();
		foreach ( $this->log->unsettled( 'job', 50 ) as $row ) {
			$jobs[] = self::job_view( $row );
		}
		return $jobs;
	}

	/**
	 * @param array $row A job's log row.
	 */
	public static function job_view( array $row ): array {
		$counts = (array) ( $row['counts'] ?? array() );
		$total  = (int) ( $counts['recipients'] ?? $counts['rows'] ?? 0 );
		$done   = 0;
		foreach ( array( 'sent', 'duplicate', 'failed', 'suppressed', 'cancelled' ) as $name ) {
			$done += (int) ( $counts[ $name ] ?? 0 );
		}
		return array(
			'id'       => $row['id'],
			'job_id'   => $row['mail_id'],
			'subject'  => $row['subject'],
			'status'   => $row['status'],
			'reason'   => $row['reason'],
			'counts'   => $counts,
			'progress' => $total > 0 ? min( 1, $done / $total ) : null,
			'eta'      => $counts['estimated_end'] ?? null,
			'created'  => $row['created_at'],
		);
	}

	/**
	 * A page of the log.
	 *
	 * @param array $filters See Postbag_Mail_Log::query().
	 * @return array{rows: array[], total: int}
	 */
	public function log( array $filters ): array {
		return $this->log->query( $filters );
	}

	/**
	 * One row, for the detail view.
	 *
	 * @param int $id Log id.
	 */
	public function entry( int $id ): ?array {
		return $this->log->get( $id );
	}

	/**
	 * @param int $page     From 1.
	 * @param int $per_page Rows.
	 */
	public function jobs( int $page = 1, int $per_page = 20 ): array {
		$result         = $this->log->query( array( 'kind' => 'job' ) + compact( 'page', 'per_page' ) );
		$result['rows'] = array_map( array( self::class, 'job_view' ), $result['rows'] );
		return $result;
	}

	/**
	 * @param string $job_id Job id.
	 * @return true|WP_Error See postbag_cancel_job().
	 */
	public function cancel_job( string $job_id ) {
		return $this->plugin->jobs()->cancel( $job_id );
	}

	/**
	 * What waits on the sender (Postbag_Schedules::listing(), soonest first),
	 * each entry with what the email log says of it: `subject`, `recipients`
	 * (a job's in words, a batch's first mail's), `log_status` and
	 * `log_reason` (the sender's word once the sync read it: its job status,
	 * or `status/control/batches/<id>.json` / the receipt), and `state`
	 * refined: 'moved' for one rescheduled and not yet due, 'cancel_requested'
	 * until the log says 'cancelled'.
	 *
	 * @return array[]
	 */
	public function scheduled(): array {
		$entries = array();
		foreach ( $this->plugin->schedules()->listing() as $entry ) {
			$row                  = 'job' === $entry['kind'] ? $this->log->get( (string) $entry['id'] ) : ( $this->log->query(
				array(
					'batch_id' => $entry['id'],
					'per_page' => 1,
				)
			)['rows'][0] ?? null );
			$entry['subject']     = (string) ( $row['subject'] ?? '' );
			$entry['recipients']  = implode( ', ', (array) ( $row['recipients'] ?? array() ) );
			$entry['log_status']  = (string) ( $row['status'] ?? '' );
			$entry['log_reason']  = (string) ( $row['reason'] ?? '' );
			$entry['state']       = self::schedule_state( $entry );
			$entries[]            = $entry;
		}
		return $entries;
	}

	/**
	 * @param array $entry A listing entry with its log status.
	 */
	private static function schedule_state( array $entry ): string {
		if ( 'cancelled' === $entry['log_status'] ) {
			return 'cancelled'; // The sender said so (or it never left this site).
		}
		if ( 'cancelled' === $entry['state'] ) {
			return 'cancel_requested';
		}
		return 'scheduled' === $entry['state'] && ! empty( $entry['moved_at'] ) ? 'moved' : $entry['state'];
	}

	/**
	 * postbag_reschedule_job() / postbag_reschedule_mail_batch(), as `POST postbag/v1/<jobs|batches>/<id>/schedule`.
	 *
	 * @param string $kind 'job' or 'batch'.
	 * @param string $id   Its id.
	 * @param array  $when `send_at` or `send_between`.
	 * @return true|WP_Error See Postbag_Schedules::reschedule().
	 */
	public function reschedule( string $kind, string $id, array $when ) {
		return $this->plugin->schedules()->reschedule( $kind, $id, $when );
	}

	/**
	 * postbag_cancel_job() / postbag_cancel_mail_batch(), as `POST postbag/v1/<jobs|batches>/<id>/cancel`.
	 *
	 * @param string $kind 'job' or 'batch'.
	 * @param string $id   Its id.
	 * @return true|WP_Error
	 */
	public function cancel_scheduled( string $kind, string $id ) {
		return 'job' === $kind ? $this->cancel_job( $id ) : $this->plugin->schedules()->cancel_batch( $id );
	}

	/**
	 * Queues a non-priority test mail, uploaded after this request's response
	 * like any other.
	 *
	 * @param string $to Recipient; default the site's admin address.
	 * @return array|WP_Error The log row of the mail.
	 */
	public function send_test( string $to = '' ) {
		$to = '' === $to ? (string) get_option( 'admin_email' ) : $to;
		if ( ! is_email( $to ) ) {
			return new WP_Error( 'postbag_invalid_address', __( 'to must be an e-mail address.', 'postbag' ), array( 'field' => 'to', 'status' => 400 ) );
		}
		$mail_id = null;
		$catch   = static function ( string $id ) use ( &$mail_id ): void {
			$mail_id = $id;
		};
		add_action( 'postbag_mail_queued', $catch, 5 );
		try {
			$queued = wp_mail(
				$to,
				$this->plugin->config()->get( 'marker_prefix' ) . ' ' . __( 'Postbag test mail', 'postbag' ),
				/* translators: %s: site URL */
				sprintf( __( "This test mail went through Postbag's whole non-priority path from %s: queued, uploaded to S3, sent by Amazon SES.", 'postbag' ), home_url() )
			);
		} finally {
			remove_action( 'postbag_mail_queued', $catch, 5 );
		}
		if ( ! $queued || null === $mail_id ) {
			return new WP_Error( 'postbag_not_queued', __( 'The test mail was not queued: is POSTBAG_BUCKET defined? See the configuration check.', 'postbag' ), array( 'status' => 500 ) );
		}
		$this->plugin->log_recorder()->write_pending(); // So the screen can show its row at once.
		return $this->log->get( $mail_id );
	}

	/**
	 * Asks the sender to send a failed mail (or a job's failed recipients)
	 * again: `requests/redrive/<uuid>.json`, handled by the sender with
	 * chalicelib/redrive.py. Only once the cause is fixed: it is sent once more.
	 * The request goes through the spool like the held-mail controls
	 * (Postbag_Schedule_Controls): written there first, put now or retried by
	 * the spool's cron events while S3 is down.
	 *
	 * @param int $id Log id.
	 * @return array|WP_Error The row after the request.
	 */
	public function resend( int $id ) {
		$row = $this->log->get( $id );
		if ( null === $row ) {
			return new WP_Error( 'postbag_not_found', __( 'No such log entry.', 'postbag' ), array( 'status' => 404 ) );
		}
		$job = 'job' === $row['kind'];
		if ( 'failed' !== $row['status'] && ! ( $job && (int) ( $row['counts']['failed'] ?? 0 ) > 0 ) ) {
			return new WP_Error( 'postbag_not_failed', __( 'Only a failed mail, or a job with failed recipients, can be sent again.', 'postbag' ), array( 'status' => 409 ) );
		}
		if ( '' === $row['batch_id'] ) {
			return new WP_Error( 'postbag_never_uploaded', __( 'This mail never reached the bucket: retry the spool instead.', 'postbag' ), array( 'status' => 409 ) );
		}
		$uuid     = wp_generate_uuid4();
		$key      = self::REDRIVE_PREFIX . $uuid . '.json';
		$request  = array(
			'version'      => 1,
			'kind'         => $job ? 'job' : 'batch',
			'id'           => $row['batch_id'],
			'mail_ids'     => $job ? array() : array( $row['mail_id'] ),
			'requested_at' => gmdate( 'Y-m-d\TH:i:s\Z', ( $this->clock )() ),
		);
		try {
			$stored = $this->plugin->schedule_controls()->request( $key, $request );
		} catch ( Postbag_Spool_Exception $e ) {
			/* translators: %s: error */
			return new WP_Error( 'postbag_spool_unavailable', sprintf( __( 'The request could not be recorded: %s. Check Site Health, then try again.', 'postbag' ), $e->getMessage() ), array( 'status' => 503 ) );
		}
		$reason = $stored ? __( 'Resend requested.', 'postbag' ) : __( 'Resend requested: waiting in the spool for S3.', 'postbag' );
		if ( $job ) {
			$this->log->set_status( $row['mail_id'], 'uploaded', $reason );
		} else {
			// The sender re-drives every failed mail of that batch generation with it, into one receipt,
			// which its result names; or finds nothing to send, and says so there too (Postbag_Log_Sync).
			$this->log->set_statuses( $this->failed_with( $row ), 'uploaded', $reason, array( 'receipt_key' => Postbag_Log_Sync::REDRIVE_PREFIX . $uuid . '.json' ) );
		}
		return $this->log->get( $id );
	}

	/**
	 * The failed mails of a mail's batch generation (those its receipt names).
	 *
	 * @param array $row A failed mail's log row.
	 * @return string[] Mail ids, its own included.
	 */
	private function failed_with( array $row ): array {
		$ids = array( $row['mail_id'] );
		if ( '' === $row['receipt_key'] ) {
			return $ids;
		}
		$same = $this->log->query(
			array(
				'batch_id' => $row['batch_id'],
				'status'   => 'failed',
				'per_page' => 200,
			)
		)['rows'];
		foreach ( $same as $other ) {
			if ( $other['receipt_key'] === $row['receipt_key'] ) {
				$ids[] = $other['mail_id'];
			}
		}
		return array_values( array_unique( $ids ) );
	}

	/** Uploads every spooled batch now. */
	public function retry_spool(): array {
		return $this->plugin->retry_spool( true );
	}

	/** Reads the sender's outcomes now. */
	public function sync(): array {
		return $this->sync->run();
	}

	/**
	 * @param int $time Unix time, or 0.
	 */
	private static function time_or_null( int $time ): ?string {
		return $time > 0 ? gmdate( 'Y-m-d\TH:i:s\Z', $time ) : null;
	}
}
