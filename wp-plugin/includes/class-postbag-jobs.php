<?php
/**
 * Notify jobs: queued by postbag_notify(), streamed after the response, uploaded.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * One notification to many recipients, from the call to the bucket.
 *
 * postbag_notify() checks the arguments (Postbag_Notify_Args), mints the job
 * id, writes the job's record to the spool and returns: the recipients are
 * not read during the request, so it costs the same for any number of them.
 * After the response (the flusher's shutdown work, after
 * fastcgi_finish_request()) the job's recipients are read a page at a time
 * (Postbag_Recipient_Source) into gzip NDJSON part files in the spool
 * (Postbag_Part_Writer), the job's progress (cursor, parts with their sizes
 * and checksums) rewritten atomically after each page. Parts are uploaded in
 * parallel waves as they accumulate; the manifest goes last, once the source
 * is exhausted and every part is in the bucket, so the sender never sees a
 * job whose parts are missing.
 *
 * Spool files per job: `<id>.job.php` (the record: what the caller asked,
 * never rewritten), `<id>.progress.php` (status, cursor, parts, attempts),
 * `<id>.part-<n>.php` (a part until it is uploaded), `<id>.att-<n>.php` (a
 * large attachment), `<id>.lock.php` (held by the process working on it:
 * the system releases it when that process dies, however it dies).
 *
 * Time: a worker stops at a page boundary (after one page at least) when its budget is spent
 * (`postbag_notify_time_budget`, 20 s; less when max_execution_time is
 * closer) and a WP-Cron event (plus spawn_cron()) continues from the stored
 * cursor. Rows are only ever written for pages past the stored cursor, and a
 * page's parts are recorded with the cursor in one atomic write, so a crash
 * anywhere neither drops a recipient nor writes one twice: a part file
 * written but not recorded is rewritten under the same number. Failed
 * uploads back off like spooled batches (Postbag_Spool_Retry::delay()) and
 * are retried by its cron events; a job never falls back to wp_mail().
 *
 * Recipients held in memory (an array, an iterable, a Closure) cannot be
 * continued elsewhere: such a job is streamed to the end by the process
 * that queued it, whatever the budget, and a continuation that finds it
 * unfinished and unlocked (its worker died) marks it failed, with the reason,
 * and fires `postbag_job_failed`.
 *
 * postbag_cancel_job() records the cancel first (Postbag_Job_Cancels), then
 * drops a job still in the spool under its lock; a worker holding the lock
 * checks for a cancel at each page, before its uploads and before the manifest, so a cancelled
 * job's manifest never leaves. A job whose manifest left, or may have (its
 * upload was tried: an error does not prove S3 did not store it), gets the
 * cancel object in the bucket instead. postbag_job_status() answers from the
 * spool while the job is there, then from the sender's `status.json`.
 *
 * Every job names a list (`postbag_notify()`'s `list`, or
 * Postbag_List_Unsubscribe::DEFAULT_LIST): the recipients are checked
 * against the site's suppression list (scope `all` and the job's list; loaded
 * once per stream, or looked up in chunks when large) CHECK_ROWS at a time as
 * they are written, suppressed rows are left out and counted (`suppressed`),
 * and every row written gets its signed `unsubscribe_url` as it is written.
 * A site not served over https cannot make those links: its jobs go without
 * `meta.list` (the sender wants both or neither), still leaving suppressed
 * recipients out.
 */
final class Postbag_Jobs {

	/** WP-Cron hook that continues jobs (planned when a job is queued, and at each pause). */
	const HOOK = 'postbag_stream_jobs';

	/** Seconds after a job is queued when its safety continuation runs, in case its worker dies. */
	const SAFETY_DELAY = 60;

	/** Default seconds of streaming per worker (`postbag_notify_time_budget`). */
	const TIME_BUDGET = 20;

	/** Seconds kept back from max_execution_time, for the last page and the uploads. */
	const TIME_MARGIN = 5;

	/** Seconds of max_execution_time granted past the budget, where set_time_limit() is allowed. */
	const UPLOAD_ROOM = 300;

	/** Parts uploaded at once, and most bytes read back from the spool for one wave. */
	const WAVE_PARTS = 16;
	const WAVE_BYTES = 8 * 1024 * 1024;

	/** Text bytes a part may take before compression (its stored size stays under the schema's 64 MiB). */
	const PART_TEXT_BYTES = 60 * 1024 * 1024;

	/** Longest row, as a JSON line: a recipient is not a payload. */
	const ROW_BYTES = 1024 * 1024;

	/** Rows checked against the suppression list at a time (a multiple of its 200-hash queries): a page is never held whole. */
	const CHECK_ROWS = 5 * Postbag_Suppressions::LOOKUP_CHUNK;

	const JOB_SUFFIX      = '.job.php';
	const PROGRESS_SUFFIX = '.progress.php';
	const LOCK_SUFFIX     = '.lock.php';

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Notify_Args */
	private $args;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Spool_Retry Its backoff is the jobs' too. */
	private $retry;

	/** @var Postbag_Job_Cancels */
	private $cancels;

	/** @var callable(): int */
	private $clock;

	/** @var array<string, resource> Job id => lock held by this process. */
	private $locks = array();

	/** @var array<string, iterable|Closure|Iterator> Job id => recipients held in memory (an Iterator once reading began). */
	private $memory = array();

	/** @var array<string, true> Jobs queued by this request, streamed after its response. */
	private $pending = array();

	/** @var string|null The job advance() works on now (a recipients callback may cancel it). */
	private $current;

	/** @var Postbag_List_Unsubscribe|null Links and suppressions; null: made from wp-config.php on first use. */
	private $lists;

	/**
	 * @param Postbag_Spool          $spool    Where jobs wait.
	 * @param Postbag_Notify_Args    $args     Checks postbag_notify()'s arguments.
	 * @param Postbag_Batch_Uploader $uploader Puts objects in the bucket.
	 * @param Postbag_Spool_Retry    $retry    Backoff, and the cron events that retry.
	 * @param callable(): int        $clock    Current Unix time.
	 * @param Postbag_Job_Cancels    $cancels  Cancel requests; default: kept in the same spool.
	 * @param Postbag_List_Unsubscribe|null $lists Unsubscribe links and suppressions; default: from wp-config.php.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Notify_Args $args, Postbag_Batch_Uploader $uploader, Postbag_Spool_Retry $retry, callable $clock, ?Postbag_Job_Cancels $cancels = null, ?Postbag_List_Unsubscribe $lists = null ) {
		$this->spool    = $spool;
		$this->args     = $args;
		$this->uploader = $uploader;
		$this->retry    = $retry;
		$this->clock    = $clock;
		$this->cancels  = $cancels ?? new Postbag_Job_Cancels( $spool, $uploader, $retry, $clock );
		$this->lists    = $lists;
	}

	public function init(): void {
		add_action( self::HOOK, array( $this, 'run' ) );
		// The spool's retry events retry jobs too: one mechanism for everything waiting for S3.
		add_action( Postbag_Spool_Retry::HOOK, array( $this, 'run' ) );
		add_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'run' ) );
		// Last, so the keyset's order and limit stand whatever another filter did.
		add_action( 'pre_user_query', array( 'Postbag_Recipient_Source', 'keyset' ), PHP_INT_MAX );
	}

	public function remove(): void {
		remove_action( self::HOOK, array( $this, 'run' ) );
		remove_action( Postbag_Spool_Retry::HOOK, array( $this, 'run' ) );
		remove_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'run' ) );
		remove_action( 'pre_user_query', array( 'Postbag_Recipient_Source', 'keyset' ), PHP_INT_MAX );
	}

	/**
	 * postbag_notify(): checks, records and returns; never reads the recipients.
	 *
	 * @param array $args See postbag_notify().
	 * @return string|WP_Error The job id, or the error naming the argument at fault (`data['field']`).
	 */
	public function notify( array $args ) {
		/**
		 * Filters a notify job's arguments before they are checked.
		 *
		 * @param array $args postbag_notify() arguments.
		 */
		$args = apply_filters( 'postbag_notify_args', $args );
		try {
			$job = $this->args->check( is_array( $args ) ? $args : array() );
		} catch ( Postbag_Mail_Exception $e ) {
			return new WP_Error( $e->reason, $e->getMessage(), array( 'field' => $e->field ) );
		}
		$job_id = wp_generate_uuid4();
		try {
			$this->create( $job_id, $job );
		} catch ( Postbag_Spool_Exception $e ) {
			// No synchronous fallback: a job that cannot be kept is refused while the caller can react.
			$this->remove_files( $job_id );
			$this->release( $job_id );
			return new WP_Error( 'postbag_spool_unavailable', $e->getMessage(), array( 'field' => 'spool' ) );
		}
		if ( 'memory' === $job['source']['kind'] ) {
			$this->memory[ $job_id ] = $job['source']['rows'];
		}
		$this->pending[ $job_id ] = true;
		// Planned before the response, so a worker killed after it still leaves the job a continuation.
		Postbag_Spool_Retry::ensure_hourly();
		wp_schedule_single_event( ( $this->clock )() + self::SAFETY_DELAY, self::HOOK );

		/**
		 * Fires when a notify job is recorded in the spool (its recipients are read after the response).
		 *
		 * @param string $job_id Job id.
		 * @param array  $args   Its arguments, after `postbag_notify_args`.
		 */
		do_action( 'postbag_job_queued', $job_id, $args );
		if ( null !== $job['schedule']['send_at'] || null !== $job['schedule']['send_between'] ) {
			/**
			 * Fires when a notify job is queued to be held by the sender until its time.
			 *
			 * @param string $job_id   Job id.
			 * @param array  $schedule `send_at` (UTC RFC 3339 or null) and `send_between` (`start`, `end`, or null).
			 */
			do_action( 'postbag_job_scheduled', $job_id, $job['schedule'] );
		}
		return $job_id;
	}

	/**
	 * Writes the job's record and first progress, holding its lock from now
	 * until this process streams it (so no continuation elsewhere takes it first).
	 *
	 * @param string $job_id Job id.
	 * @param array  $job    See Postbag_Notify_Args::check().
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	private function create( string $job_id, array $job ): void {
		$lock = $this->spool->try_lock( $job_id . self::LOCK_SUFFIX );
		if ( null === $lock ) {
			throw new Postbag_Spool_Exception( sprintf( 'Cannot lock a job in the spool directory %s.', $this->spool->dir() ) );
		}
		$this->locks[ $job_id ] = $lock;
		foreach ( $job['blobs'] as $n => $blob ) {
			$job['attachments'][ $n ]['s3_key'] = Postbag_Batch::attachment_key( $job_id, 'job', (int) $n );
			$this->spool->write_file( self::attachment_file( $job_id, (int) $n ), array( $blob ) );
		}
		$source = $job['source'];
		unset( $source['rows'] );
		$now    = ( $this->clock )();
		$record = array(
			'job_id'       => $job_id,
			'site'         => array(
				'url'     => home_url(),
				'blog_id' => get_current_blog_id(),
			),
			'created_at'   => gmdate( 'Y-m-d\TH:i:s\Z', $now ),
			'send_at'      => $job['schedule']['send_at'],
			'send_between' => $job['schedule']['send_between'],
			'source'       => $source,
			'meta'         => $job['meta'],
			// Who to leave out; meta.list (and the links) only where links can be made.
			'list'         => $job['meta']['list'] ?? null,
			'template'     => $job['template'],
			'context_json' => $job['context_json'],
			'attachments'  => $job['attachments'],
			'blobs'        => array_keys( $job['blobs'] ),
		);
		if ( isset( $record['meta']['list'] ) && ! $this->lists()->can_link() ) {
			unset( $record['meta']['list'] );
		} elseif ( isset( $record['meta']['list'] ) && '' !== $this->lists()->mailto() ) {
			$record['meta']['unsubscribe_mailto'] = $this->lists()->mailto();
		}
		$this->spool->write_file( $job_id . self::JOB_SUFFIX, array( Postbag_Batch::encode( $record ) ) );
		$this->save_progress(
			$job_id,
			array(
				'status'           => 'streaming',
				'kind'             => $source['kind'],
				'cursor'           => null,
				'next_part'        => 1,
				'rows'             => 0,
				'dropped'          => 0,
				'suppressed'       => 0,
				'last_dropped'     => '',
				'parts'            => array(),
				'blobs_uploaded'   => false,
				'attempts'         => 0,
				'first_spooled_at' => $now,
				'next_attempt_at'  => $now,
				'last_error'       => '',
			)
		);
	}

	/** Whether this request queued jobs to stream after its response. */
	public function has_pending(): bool {
		return (bool) $this->pending;
	}

	/**
	 * The flusher's after-response work: this request's jobs, within the time budget.
	 *
	 * @return array See stream_pending().
	 */
	public function after_response(): array {
		$ids           = array_keys( $this->pending );
		$this->pending = array();
		return $this->advance_all( $ids, $this->deadline(), false );
	}

	/** The cron events' work: every job in the spool, within the time budget. */
	public function run(): void {
		$this->stream_pending();
	}

	/**
	 * Advances every job in the spool that no other process holds: streams
	 * its recipients until the deadline, uploads what is due, the manifest
	 * last. For the cron events, benchmarks and tests.
	 *
	 * Cancels of jobs no longer in the spool are put in the bucket first.
	 *
	 * @param float|null $deadline Unix time (microtime) to stop streaming at a page boundary; default: the time budget.
	 * @param bool       $force    Ignore upload backoff.
	 * @return array{jobs: int, rows: int, parts: int, uploaded: string[], paused: string[], waiting: string[], failed: string[], cancelled: string[]}
	 *         What it did: rows and parts written, jobs whose manifest is in the bucket, jobs stopped by
	 *         the deadline, jobs waiting for S3, jobs that failed, jobs dropped from the spool as cancelled.
	 */
	public function stream_pending( ?float $deadline = null, bool $force = false ): array {
		foreach ( $this->cancels->requested_ids() as $id ) {
			if ( null === $this->spool->read_file( $id . self::JOB_SUFFIX ) ) {
				$this->cancels->send( $id, $force );
			}
		}
		$this->cancels->prune();
		$ids           = array_unique( array_merge( array_keys( $this->pending ), $this->ids() ) );
		$this->pending = array();
		return $this->advance_all( $ids, $deadline ?? $this->deadline(), $force );
	}

	/**
	 * postbag_cancel_job(): recorded, then settled as far as it can be now.
	 *
	 * @param mixed $job_id A job id.
	 * @return true|WP_Error True once the cancel is recorded (an S3 failure leaves it
	 *                       spooled and retried); an error for a bad id or an unwritable spool.
	 */
	public function cancel( $job_id ) {
		if ( ! Postbag_Job_Format_V2::is_job_id( $job_id ) ) {
			return self::bad_job_id();
		}
		try {
			$this->cancels->request( $job_id );
		} catch ( Postbag_Spool_Exception $e ) {
			return new WP_Error( 'postbag_spool_unavailable', $e->getMessage(), array( 'field' => 'spool' ) );
		}
		// Called from inside this job's own streaming (its recipients callback): recorded
		// only, for the loop drops it at its next page.
		if ( $this->current !== $job_id && $this->cancels->requested( $job_id ) && null !== $this->spool->read_file( $job_id . self::JOB_SUFFIX ) ) {
			$summary = self::summary();
			$this->advance( $job_id, microtime( true ), false, $summary ); // Finds the request under the job's lock and drops it.
		}
		if ( $this->cancels->requested( $job_id ) ) {
			if ( null === $this->spool->read_file( $job_id . self::JOB_SUFFIX ) ) {
				$this->cancels->send( $job_id, true );
			} elseif ( $this->current !== $job_id ) {
				// Another process holds the job: it drops it at its next page or before its
				// manifest; this retry event settles it if that process dies first.
				wp_schedule_single_event( ( $this->clock )(), Postbag_Spool_Retry::HOOK );
			}
		}
		return true;
	}

	/**
	 * postbag_job_status(): the spool's view while the job is in it, then the sender's `status.json`.
	 *
	 * @param mixed $job_id A job id.
	 * @return array|WP_Error See postbag_job_status(); an error for a bad id, an S3 failure, a damaged status.
	 */
	public function status( $job_id ) {
		if ( ! Postbag_Job_Format_V2::is_job_id( $job_id ) ) {
			return self::bad_job_id();
		}
		$cancel = $this->cancels->get( $job_id );
		if ( null !== $cancel && Postbag_Job_Cancels::DROPPED === $cancel['state'] ) {
			return array(
				'job_id'       => $job_id,
				'state'        => 'cancelled',
				'source'       => 'spool',
				'cancel'       => Postbag_Job_Cancels::DROPPED,
				'cancelled_at' => gmdate( 'Y-m-d\TH:i:s\Z', (int) $cancel['settled_at'] ),
			);
		}
		$view     = array(
			'job_id' => $job_id,
			'cancel' => null === $cancel ? null : $cancel['state'],
		);
		$progress = $this->progress( $job_id );
		if ( null !== $progress ) {
			return $view + $this->spool_view( $progress );
		}
		$key    = Postbag_Job_Format_V2::status_key( $job_id );
		$result = $this->uploader->get( $key );
		if ( $result->ok ) {
			$doc = json_decode( $result->body, true );
			if ( ! is_array( $doc ) || ! isset( $doc['state'] ) || ! is_string( $doc['state'] ) ) {
				return new WP_Error( 'postbag_invalid_status', sprintf( '%s is not a job status document.', $key ), array( 'field' => 'job_id' ) );
			}
			return array_merge( $doc, $view, array( 'source' => 'sender' ) );
		}
		// Not written yet: 404, or 403 AccessDenied where the site may not list the bucket
		// (its IAM policy). Other 403s (a bad signature or key) are errors like a 5xx.
		if ( 404 === $result->status || ( 403 === $result->status && preg_match( '/^HTTP 403 AccessDenied\b/', $result->error ) ) ) {
			return $view + array(
				'state'  => 'uploaded',
				'source' => 'sender',
			);
		}
		return new WP_Error(
			'postbag_s3_unavailable',
			sprintf( 'Cannot read %s: %s', $key, $result->error ),
			array(
				'field'  => 'job_id',
				'status' => $result->status,
			)
		);
	}

	/**
	 * What the spool knows of a job it holds.
	 *
	 * @param array $progress Its progress.
	 */
	private function spool_view( array $progress ): array {
		$now     = ( $this->clock )();
		$waiting = 'failed' !== $progress['status'] && (int) $progress['attempts'] > 0 && (int) $progress['next_attempt_at'] > $now;
		return array(
			'state'           => $waiting ? 'waiting' : (string) $progress['status'],
			'source'          => 'spool',
			'rows'            => (int) $progress['rows'],
			'dropped'         => (int) $progress['dropped'],
			'suppressed'      => (int) ( $progress['suppressed'] ?? 0 ),
			'parts'           => count( $progress['parts'] ),
			'parts_uploaded'  => count( $progress['parts'] ) - count( self::not_uploaded( $progress ) ),
			'attempts'        => (int) $progress['attempts'],
			'last_error'      => (string) $progress['last_error'],
			'next_attempt_at' => $waiting ? gmdate( 'Y-m-d\TH:i:s\Z', (int) $progress['next_attempt_at'] ) : null,
		);
	}

	private static function bad_job_id(): WP_Error {
		return new WP_Error( 'postbag_invalid_job_id', 'A job id is 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit.', array( 'field' => 'job_id' ) );
	}

	/**
	 * Ids of the jobs in the spool, oldest record first.
	 *
	 * @return string[]
	 */
	public function ids(): array {
		$ids = array();
		foreach ( $this->spool->names( '*' . self::JOB_SUFFIX ) as $name ) {
			$ids[] = substr( $name, 0, -strlen( self::JOB_SUFFIX ) );
		}
		return $ids;
	}

	/**
	 * Every job's progress (status, rows, parts, attempts, last_error), for notices and Site Health.
	 *
	 * @return array<string, array> Job id => progress.
	 */
	public function states(): array {
		$states = array();
		foreach ( $this->ids() as $id ) {
			$progress = $this->progress( $id );
			if ( null !== $progress ) {
				$states[ $id ] = $progress;
			}
		}
		return $states;
	}

	/**
	 * Removes a failed job's files (the admin's "Dismiss").
	 *
	 * @param string $job_id Job id.
	 * @return bool Whether it was a failed job.
	 */
	public function forget_failed( string $job_id ): bool {
		$progress = $this->progress( $job_id );
		if ( null === $progress || 'failed' !== $progress['status'] ) {
			return false;
		}
		$this->remove_files( $job_id );
		return true;
	}

	/**
	 * The time budget's end: `postbag_notify_time_budget` seconds from now,
	 * less when max_execution_time (as set_time_limit() left it) ends first.
	 */
	private function deadline(): float {
		/**
		 * Filters how many seconds a worker streams notify jobs before it
		 * leaves the rest to a WP-Cron continuation.
		 *
		 * @param int $seconds Default 20.
		 */
		$budget = max( 1, (int) apply_filters( 'postbag_notify_time_budget', self::TIME_BUDGET ) );
		$limit  = (int) ini_get( 'max_execution_time' );
		if ( $limit > 0 ) {
			$started = (float) ( $_SERVER['REQUEST_TIME_FLOAT'] ?? microtime( true ) );
			// Room after the budget for the last page and the uploads (each with its own timeout).
			if ( function_exists( 'set_time_limit' ) && set_time_limit( $budget + self::UPLOAD_ROOM ) ) {
				$limit   = $budget + self::UPLOAD_ROOM; // The count starts again now: the budget alone decides.
				$started = microtime( true );
			}
			return min( microtime( true ) + $budget, $started + $limit - self::TIME_MARGIN );
		}
		return microtime( true ) + $budget;
	}

	/**
	 * @param string[] $ids      Job ids.
	 * @param float    $deadline When to stop streaming.
	 * @param bool     $force    Ignore upload backoff.
	 * @return array See stream_pending().
	 */
	private function advance_all( array $ids, float $deadline, bool $force ): array {
		$summary = self::summary();
		foreach ( $ids as $id ) {
			$this->advance( (string) $id, $deadline, $force, $summary );
		}
		if ( $summary['paused'] ) {
			$this->continue_soon();
		}
		return $summary;
	}

	/** An empty summary, see stream_pending(). */
	private static function summary(): array {
		return array(
			'jobs'      => 0,
			'rows'      => 0,
			'parts'     => 0,
			'uploaded'  => array(),
			'paused'    => array(),
			'waiting'   => array(),
			'failed'    => array(),
			'cancelled' => array(),
		);
	}

	/**
	 * One job, as far as it goes now; nothing it meets escapes (another job must go on).
	 *
	 * @param string $id       Job id.
	 * @param float  $deadline When to stop streaming.
	 * @param bool   $force    Ignore upload backoff.
	 * @param array  $summary  See stream_pending(), added to.
	 */
	private function advance( string $id, float $deadline, bool $force, array &$summary ): void {
		if ( ! isset( $this->locks[ $id ] ) && null === $this->spool->read_file( $id . self::JOB_SUFFIX ) ) {
			return; // Finished meanwhile: no lock file to make.
		}
		$lock = $this->locks[ $id ] ?? $this->spool->try_lock( $id . self::LOCK_SUFFIX );
		if ( null === $lock ) {
			return; // Another process is at it.
		}
		$this->locks[ $id ] = $lock;
		$record             = $this->record( $id );
		$progress           = $this->progress( $id );
		$switched           = false;
		$this->current      = $id;
		try {
			if ( null === $record ) {
				$this->spool->delete_file( $id . self::LOCK_SUFFIX ); // Finished by the process that held it.
				return;
			}
			if ( $this->cancels->requested( $id ) ) {
				$this->drop( $id, $progress, $summary ); // Failed or damaged jobs too: cancelling clears them.
				return;
			}
			if ( null === $progress || 'failed' === $progress['status'] ) {
				return; // Failed, waiting for the admin (a damaged progress too: the notice shows the record).
			}
			++$summary['jobs'];
			$blog_id = (int) ( $record['site']['blog_id'] ?? 0 );
			if ( is_multisite() && $blog_id && get_current_blog_id() !== $blog_id ) {
				$switched = switch_to_blog( $blog_id ); // A user_query reads the users of the job's site.
			}
			if ( 'streaming' === $progress['status'] && 'memory' !== $progress['kind'] && ! $this->due( $progress, $force ) ) {
				$summary['waiting'][] = $id; // Its source or an upload failed: backed off.
				return;
			}
			if ( 'streaming' === $progress['status'] ) {
				$this->stream( $id, $record, $progress, $deadline, $force, $summary );
			}
			if ( 'uploading' === $progress['status'] ) {
				$this->upload( $id, $record, $progress, $force, $summary );
			}
		} catch ( Throwable $e ) {
			// A fault of the source or the spool: kept with its reason and retried after a backoff.
			if ( null !== $progress && isset( $this->memory[ $id ] ) && 'streaming' === $progress['status'] ) {
				$this->fail( $id, $progress, sprintf( 'Reading its recipients failed: %s', $e->getMessage() ), $summary );
			} elseif ( null !== $progress ) {
				$this->attempt_failed( $id, $progress, $e->getMessage(), $summary );
			}
		} finally {
			$this->current = null;
			if ( $switched ) {
				restore_current_blog();
			}
			if ( null === $progress || 'streaming' !== $progress['status'] ) {
				unset( $this->memory[ $id ] ); // Read to the end, or failed: the rows can go.
			}
			$this->release( $id );
		}
	}

	/**
	 * Lets go of a job's lock, if this process holds it.
	 *
	 * @param string $id Job id.
	 */
	private function release( string $id ): void {
		if ( isset( $this->locks[ $id ] ) ) {
			flock( $this->locks[ $id ], LOCK_UN );
			fclose( $this->locks[ $id ] );
			unset( $this->locks[ $id ] );
		}
	}

	/**
	 * Reads pages into parts until the source ends or the deadline passes.
	 *
	 * @param string $id       Job id.
	 * @param array  $record   Its record.
	 * @param array  $progress Its progress, updated.
	 * @param float  $deadline When to stop, at a page boundary.
	 * @param bool   $force    Ignore upload backoff.
	 * @param array  $summary  See stream_pending().
	 */
	private function stream( string $id, array $record, array &$progress, float $deadline, bool $force, array &$summary ): void {
		$rows = null;
		if ( 'memory' === $record['source']['kind'] ) {
			if ( ! isset( $this->memory[ $id ] ) ) {
				$this->fail( $id, $progress, sprintf( 'Its recipients were held in the memory of the PHP worker that queued it, which ended after writing %d of them (killed, or out of time or memory): only a user_query or a callback source survives the worker. Queue it again.', $progress['rows'] ), $summary );
				return;
			}
			if ( ! $this->memory[ $id ] instanceof Iterator ) {
				$this->memory[ $id ] = Postbag_Recipient_Source::iterator( $this->memory[ $id ] );
			}
			if ( function_exists( 'set_time_limit' ) && (int) ini_get( 'max_execution_time' ) > 0 ) {
				set_time_limit( 0 ); // These rows die with this worker: no time limit may cut them short.
			}
			$rows = $this->memory[ $id ];
		}
		$pages   = 0;
		$checker = isset( $record['list'] ) ? $this->lists()->checker( $record['list'] ) : null;
		$link    = isset( $record['meta']['list'] ) ? $this->lists()->linker( $record['meta']['list'] ) : null;
		while ( 'streaming' === $progress['status'] ) {
			// At least a page each time, so continuations always progress; memory rows
			// cannot be continued elsewhere: they are streamed to the end here.
			if ( null === $rows && $pages++ > 0 && microtime( true ) >= $deadline ) {
				$summary['paused'][] = $id;
				return;
			}
			if ( $this->cancels->requested( $id ) ) {
				$this->drop( $id, $progress, $summary ); // Cancelled while this worker streams it.
				return;
			}
			$page  = Postbag_Recipient_Source::page( $record['source'], $progress['cursor'], Postbag_Job_Format_V2::PART_ROWS, $rows );
			$next  = $progress; // Until it is saved, a fault leaves the job as it was.
			$kept  = null === $checker ? $page['rows'] : self::leave_out_suppressed( $id, $checker, $page['rows'], $next, isset( $record['meta']['list'] ) );
			$parts = $this->write( $id, $kept, $next, $link );

			// The page's parts and the cursor past it, in one atomic write.
			$next['parts']  = array_merge( $next['parts'], $parts );
			$next['cursor'] = $page['cursor'];
			if ( $page['done'] ) {
				$next['status'] = 'uploading';
			}
			$this->save_progress( $id, $next );
			$progress = $next;
			$summary['parts'] += count( $parts );
			$summary['rows']  += array_sum( array_column( $parts, 'rows' ) );
			unset( $page, $kept ); // A memory source's page is an array: not held while the next is read.

			if ( 'streaming' === $progress['status'] && count( self::not_uploaded( $progress ) ) >= self::WAVE_PARTS && $this->due( $progress, $force ) ) {
				$this->upload_parts( $id, $progress, $summary );
			}
		}
	}

	/**
	 * Writes a page's rows into as many parts as they need.
	 *
	 * @param string        $id       Job id.
	 * @param iterable      $rows     The page.
	 * @param array         $progress Its progress: `next_part`, `rows`, `dropped` are updated (saved by the caller).
	 * @param callable|null $link     For a manifest with a list: address => its unsubscribe link, or null (Postbag_Unsubscribe_Token::linker()).
	 * @return array[] The parts written.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	private function write( string $id, iterable $rows, array &$progress, ?callable $link = null ): array {
		$filtered = has_filter( 'postbag_notify_recipient' );
		$parts    = array();
		$writer   = null;
		try {
			foreach ( $rows as $row ) {
				if ( $filtered ) {
					/**
					 * Filters one recipient row of a notify job; false leaves it out.
					 *
					 * @param array|false $row    `email`, `name`, `user_id`, `vars`.
					 * @param string      $job_id Job id.
					 */
					$row = apply_filters( 'postbag_notify_recipient', $row, $id );
					if ( false === $row ) {
						continue;
					}
				}
				$row = Postbag_Job_Format_V2::recipient( $row );
				if ( null !== $link && is_array( $row ) ) {
					$url = $link( $row['email'] );
					// The sender refuses a row of a list job without its link: leave it out, visibly.
					$row = null === $url ? sprintf( '%s: no unsubscribe link can be made for it (longer than %d characters, or the site lost https)', $row['email'], Postbag_Unsubscribe_Token::MAX_URL ) : $row + array( 'unsubscribe_url' => $url );
				}
				$line = is_array( $row ) ? Postbag_Job_Format_V2::line( $row ) : false;
				if ( false === $line || strlen( $line ) > self::ROW_BYTES ) {
					// One bad row never stops the others; the sender never sees it.
					++$progress['dropped'];
					$progress['last_dropped'] = is_string( $row ) ? $row : 'a row that cannot be encoded as JSON, or larger than 1 MB';
					continue;
				}
				$writer = $writer ?? new Postbag_Part_Writer( $this->spool );
				$writer->add( $line );
				if ( $writer->rows() >= Postbag_Job_Format_V2::PART_ROWS || $writer->text_bytes() >= self::PART_TEXT_BYTES ) {
					$parts[] = $this->finish_part( $id, $writer, $progress );
					$writer  = null;
				}
			}
			if ( null !== $writer ) {
				$parts[] = $this->finish_part( $id, $writer, $progress );
				$writer  = null;
			}
		} finally {
			if ( null !== $writer ) {
				$writer->discard();
			}
		}
		return $parts;
	}

	/**
	 * A page without the recipients suppressed for every list or the job's
	 * (Postbag_List_Unsubscribe::checker(): no query per recipient), checked
	 * CHECK_ROWS at a time as the rows are written, so the page's rows and
	 * hashes are never all held at once.
	 *
	 * When the list cannot be read and the manifest names the list, the rest
	 * of the page is written as it is (counted in `unchecked`, and logged):
	 * the sender checks every recipient of a list job itself and skips a send
	 * when its own lookup fails, while a job whose rows live only in this
	 * worker's memory would be lost by failing. Without meta.list (no https)
	 * the sender cannot check the list's scope: the job waits and retries.
	 *
	 * @param string   $id            Job id.
	 * @param callable $checker       The stream's check.
	 * @param iterable $rows          The page.
	 * @param array    $progress      Its progress: `suppressed`, `unchecked` are counted (saved by the caller).
	 * @param bool     $sender_checks The manifest names the list: the sender checks its scope too.
	 * @return Generator<int, mixed> The rows to write.
	 * @throws RuntimeException When the suppression list cannot be read and the sender cannot check it either.
	 */
	private static function leave_out_suppressed( string $id, callable $checker, iterable $rows, array &$progress, bool $sender_checks ): Generator {
		$unchecked = 0;
		$failure   = null; // The suppression read's error, once it failed.
		foreach ( self::chunks( $rows, self::CHECK_ROWS ) as $chunk ) {
			$hashes = array();
			foreach ( $chunk as $n => $row ) {
				if ( is_array( $row ) && isset( $row['email'] ) && is_string( $row['email'] ) ) {
					$hashes[ $n ] = Postbag_Suppressions::hash( $row['email'] );
				}
			}
			$suppressed = array();
			if ( null === $failure ) {
				try {
					$suppressed = $checker( $hashes );
				} catch ( RuntimeException $e ) {
					if ( ! $sender_checks ) {
						throw $e;
					}
					$failure = $e->getMessage(); // The rest of the page goes unchecked: no query more for it.
				}
			}
			if ( null !== $failure ) {
				$unchecked += count( $chunk );
			}
			foreach ( $chunk as $n => $row ) {
				if ( isset( $hashes[ $n ], $suppressed[ $hashes[ $n ] ] ) ) {
					$progress['suppressed'] = (int) ( $progress['suppressed'] ?? 0 ) + 1;
					continue;
				}
				yield $row;
			}
		}
		if ( $unchecked ) {
			$progress['unchecked'] = (int) ( $progress['unchecked'] ?? 0 ) + $unchecked;
			// phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log -- the site owner's trace of it.
			error_log( sprintf( 'Postbag: job %s: %d recipients written without the site\'s suppression check (%s); the sender checks them before sending.', $id, $unchecked, $failure ) );
		}
	}

	/**
	 * @param iterable $rows Rows.
	 * @param int      $size Most rows a chunk.
	 * @return Generator<int, array> Lists of up to $size rows, in order.
	 */
	private static function chunks( iterable $rows, int $size ): Generator {
		$chunk = array();
		foreach ( $rows as $row ) {
			$chunk[] = $row;
			if ( count( $chunk ) >= $size ) {
				yield $chunk;
				$chunk = array();
			}
		}
		if ( $chunk ) {
			yield $chunk;
		}
	}

	private function lists(): Postbag_List_Unsubscribe {
		if ( null === $this->lists ) {
			$this->lists = new Postbag_List_Unsubscribe( Postbag_Unsubscribe_Token::from_constants( $this->clock ), new Postbag_Suppressions(), Postbag_Config::from_constants()->get( 'unsubscribe_mailto' ) );
		}
		return $this->lists;
	}

	/**
	 * @param string              $id       Job id.
	 * @param Postbag_Part_Writer $writer   A part with rows.
	 * @param array               $progress Updated: the next part number, rows written.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	private function finish_part( string $id, Postbag_Part_Writer $writer, array &$progress ): array {
		$n    = (int) $progress['next_part'];
		$part = $writer->finish( self::part_file( $id, $n ), Postbag_Job_Format_V2::part_key( $id, $n ) );
		$progress['next_part'] = $n + 1;
		$progress['rows']     += $part['rows'];
		return $part;
	}

	/**
	 * Uploads what is due: the parts, large attachments, then the manifest.
	 *
	 * @param string $id       Job id.
	 * @param array  $record   Its record.
	 * @param array  $progress Its progress, updated.
	 * @param bool   $force    Ignore the backoff.
	 * @param array  $summary  See stream_pending().
	 */
	private function upload( string $id, array $record, array &$progress, bool $force, array &$summary ): void {
		if ( ! $this->due( $progress, $force ) ) {
			$summary['waiting'][] = $id;
			return;
		}
		if ( $this->cancels->requested( $id ) ) {
			$this->drop( $id, $progress, $summary ); // Cancelled on the last page: no part goes up.
			return;
		}
		if ( ! $this->upload_parts( $id, $progress, $summary ) || ! $this->upload_blobs( $id, $record, $progress, $summary ) ) {
			return;
		}
		if ( $this->cancels->requested( $id ) ) {
			$this->drop( $id, $progress, $summary ); // Cancelled while the parts went up: the manifest stays home.
			return;
		}
		// Before the upload: a failed PutObject may still have stored it, so from now on a
		// cancel must reach the bucket.
		$progress['manifest_tried'] = true;
		$this->save_progress( $id, $progress );
		$key      = Postbag_Job_Format_V2::manifest_key( $id );
		$failures = $this->uploader->put( array( $key => Postbag_Job_Format_V2::manifest( $record, $progress['parts'], (int) $progress['rows'] ) ), 'application/json' );
		if ( isset( $failures[ $key ] ) ) {
			$this->attempt_failed( $id, $progress, $failures[ $key ], $summary );
			return;
		}
		$this->remove_files( $id );
		$summary['uploaded'][] = $id;
		if ( $this->cancels->requested( $id ) ) {
			$this->cancels->send( $id, true ); // Cancelled while the manifest went up.
		}

		/**
		 * Fires when a notify job's manifest is in the bucket, after all its parts: the sender takes it from here.
		 *
		 * @param string $job_id  Job id.
		 * @param int    $rows    Recipients in its parts.
		 * @param int    $dropped Rows left out as invalid.
		 * @param int    $suppressed Rows left out as suppressed (for every list or the job's).
		 */
		do_action( 'postbag_job_uploaded', $id, (int) $progress['rows'], (int) $progress['dropped'], (int) ( $progress['suppressed'] ?? 0 ) );
	}

	/**
	 * Uploads the parts not yet in the bucket, in parallel waves read back from the spool.
	 *
	 * @param string $id       Job id.
	 * @param array  $progress Its progress, updated and saved.
	 * @param array  $summary  See stream_pending().
	 * @return bool Whether every part is in the bucket now.
	 */
	private function upload_parts( string $id, array &$progress, array &$summary ): bool {
		foreach ( self::waves( $progress['parts'], self::not_uploaded( $progress ) ) as $wave ) {
			$bodies = array();
			foreach ( $wave as $index ) {
				$body = $this->spool->read_file( self::part_file( $id, self::part_number( $progress['parts'][ $index ]['key'] ) ) );
				if ( null === $body || strlen( $body ) !== $progress['parts'][ $index ]['bytes'] ) {
					$this->fail( $id, $progress, sprintf( 'Its part file %s is missing from the spool or damaged.', $progress['parts'][ $index ]['key'] ), $summary );
					return false;
				}
				$bodies[ $progress['parts'][ $index ]['key'] ] = $body;
			}
			// Gzip files, not gzip-encoded JSON: no Content-Encoding, so S3 hands out the bytes the checksum covers.
			$failures = $this->uploader->put( $bodies, 'application/x-ndjson' );
			unset( $bodies );
			foreach ( $wave as $index ) {
				if ( ! isset( $failures[ $progress['parts'][ $index ]['key'] ] ) ) {
					$progress['parts'][ $index ]['uploaded'] = true;
				}
			}
			$this->save_progress( $id, $progress );
			foreach ( $wave as $index ) {
				if ( $progress['parts'][ $index ]['uploaded'] ) {
					$this->spool->delete_file( self::part_file( $id, self::part_number( $progress['parts'][ $index ]['key'] ) ) );
				}
			}
			if ( $failures ) {
				$this->attempt_failed( $id, $progress, (string) reset( $failures ), $summary );
				return false;
			}
		}
		return true;
	}

	/**
	 * Large attachments, before the manifest that names them.
	 *
	 * @param string $id       Job id.
	 * @param array  $record   Its record.
	 * @param array  $progress Its progress, updated.
	 * @param array  $summary  See stream_pending().
	 * @return bool Whether they are all in the bucket.
	 */
	private function upload_blobs( string $id, array $record, array &$progress, array &$summary ): bool {
		if ( $progress['blobs_uploaded'] || ! $record['blobs'] ) {
			return true;
		}
		$bodies = array();
		foreach ( $record['blobs'] as $n ) {
			$body = $this->spool->read_file( self::attachment_file( $id, (int) $n ) );
			if ( null === $body ) {
				$this->fail( $id, $progress, sprintf( 'Its attachment %s is missing from the spool.', $record['attachments'][ $n ]['filename'] ), $summary );
				return false;
			}
			$bodies[ $record['attachments'][ $n ]['s3_key'] ] = $body;
		}
		$failures = $this->uploader->put( $bodies, 'application/octet-stream' );
		if ( $failures ) {
			$this->attempt_failed( $id, $progress, (string) reset( $failures ), $summary );
			return false;
		}
		$progress['blobs_uploaded'] = true;
		$this->save_progress( $id, $progress );
		return true;
	}

	/**
	 * Indexes of parts in waves of at most WAVE_PARTS and WAVE_BYTES (a larger part goes alone).
	 *
	 * @param array[] $parts   A job's parts.
	 * @param int[]   $indexes Those to upload.
	 * @return Generator<int, int[]>
	 */
	private static function waves( array $parts, array $indexes ): Generator {
		$wave  = array();
		$bytes = 0;
		foreach ( $indexes as $index ) {
			$size = (int) $parts[ $index ]['bytes'];
			if ( $wave && ( count( $wave ) >= self::WAVE_PARTS || $bytes + $size > self::WAVE_BYTES ) ) {
				yield $wave;
				$wave  = array();
				$bytes = 0;
			}
			$wave[] = $index;
			$bytes += $size;
		}
		if ( $wave ) {
			yield $wave;
		}
	}

	/**
	 * @param array $progress A job's progress.
	 * @return int[] Indexes of its parts not in the bucket yet.
	 */
	private static function not_uploaded( array $progress ): array {
		return array_keys(
			array_filter(
				$progress['parts'],
				static function ( array $part ): bool {
					return ! $part['uploaded'];
				}
			)
		);
	}

	/**
	 * @param array $progress A job's progress.
	 * @param bool  $force    Ignore the backoff.
	 */
	private function due( array $progress, bool $force ): bool {
		return $force || (int) $progress['next_attempt_at'] <= ( $this->clock )();
	}

	/**
	 * An upload or a read failed: the job waits in the spool, backed off like
	 * a batch, retried by the spool's cron event.
	 *
	 * @param string $id       Job id.
	 * @param array  $progress Its progress, updated and saved.
	 * @param string $reason   Why.
	 * @param array  $summary  See stream_pending().
	 */
	private function attempt_failed( string $id, array &$progress, string $reason, array &$summary ): void {
		$now                         = ( $this->clock )();
		$progress['attempts']        = (int) $progress['attempts'] + 1;
		$progress['last_error']      = $reason;
		$progress['next_attempt_at'] = $now + $this->retry->delay( $progress['attempts'] );
		try {
			$this->save_progress( $id, $progress );
		} catch ( Postbag_Spool_Exception $e ) {
			unset( $e ); // The job waits with its last saved progress: retried all the same.
		}
		$summary['waiting'][] = $id;
		Postbag_Spool_Retry::ensure_hourly();
		// Refused when a retry is already planned within ten minutes of it, which is as good.
		wp_schedule_single_event( $progress['next_attempt_at'], Postbag_Spool_Retry::HOOK );

		/**
		 * Fires when a notify job could not go on (an upload failed, its source
		 * failed) and waits in the spool for a retry. It never falls back to wp_mail().
		 *
		 * @param string $job_id Job id.
		 * @param string $reason Why.
		 */
		do_action( 'postbag_job_spooled', $id, $reason );
	}

	/**
	 * A job that can never finish: kept, marked failed with the reason (the
	 * admin notice shows it), its part files dropped, `postbag_job_failed` fired.
	 *
	 * @param string $id       Job id.
	 * @param array  $progress Its progress, updated and saved.
	 * @param string $reason   Why.
	 * @param array  $summary  See stream_pending().
	 */
	private function fail( string $id, array &$progress, string $reason, array &$summary ): void {
		$progress['status']     = 'failed';
		$progress['last_error'] = $reason;
		$progress['failed_at']  = ( $this->clock )();
		try {
			$this->save_progress( $id, $progress );
		} catch ( Postbag_Spool_Exception $e ) {
			unset( $e ); // Found failed again by the next run.
		}
		foreach ( $this->spool->names( $id . '.part-*.php' ) as $name ) {
			$this->spool->delete_file( $name );
		}
		$summary['failed'][] = $id;

		/**
		 * Fires when a notify job failed for good; its manifest was never uploaded, so nobody got it.
		 *
		 * @param string $job_id Job id.
		 * @param string $reason Why.
		 */
		do_action( 'postbag_job_failed', $id, $reason );
	}

	/** Plans the continuation of paused jobs now, and wakes WP-Cron. */
	private function continue_soon(): void {
		// A safety event planned minutes ahead would make WordPress refuse one now: this one replaces it.
		wp_clear_scheduled_hook( self::HOOK );
		wp_schedule_single_event( ( $this->clock )(), self::HOOK );
		if ( ! ( defined( 'DISABLE_WP_CRON' ) && DISABLE_WP_CRON ) ) {
			spawn_cron();
		}
	}

	/**
	 * A cancelled job leaves the spool (its lock held): nobody gets it, unless
	 * its manifest was tried, when the cancel must go to the bucket.
	 *
	 * @param string     $id       Job id.
	 * @param array|null $progress Its progress (null when damaged).
	 * @param array      $summary  See stream_pending().
	 */
	private function drop( string $id, ?array $progress, array &$summary ): void {
		$tried = null !== $progress && ! empty( $progress['manifest_tried'] );
		$this->remove_files( $id );
		unset( $this->memory[ $id ], $this->pending[ $id ] );
		$summary['cancelled'][] = $id;
		if ( $tried ) {
			$this->cancels->send( $id, true );
		} else {
			$this->cancels->dropped( $id );
		}
	}

	/**
	 * @param string $id Job id.
	 */
	private function remove_files( string $id ): void {
		// The record first: a job without its record is gone; the lock file last; a
		// cancel request stays (Postbag_Job_Cancels settles and prunes it).
		$this->spool->delete_file( $id . self::JOB_SUFFIX );
		foreach ( $this->spool->names( $id . '.*.php' ) as $name ) {
			if ( $id . self::LOCK_SUFFIX !== $name && $id . Postbag_Job_Cancels::SUFFIX !== $name ) {
				$this->spool->delete_file( $name );
			}
		}
		$this->spool->delete_file( $id . self::LOCK_SUFFIX );
	}

	/**
	 * @param string $id Job id.
	 */
	private function record( string $id ): ?array {
		$json   = $this->spool->read_file( $id . self::JOB_SUFFIX );
		$record = null === $json ? null : json_decode( $json, true );
		return is_array( $record ) ? $record : null;
	}

	/**
	 * @param string $id Job id.
	 */
	private function progress( string $id ): ?array {
		$json     = $this->spool->read_file( $id . self::PROGRESS_SUFFIX );
		$progress = null === $json ? null : json_decode( $json, true );
		return is_array( $progress ) && isset( $progress['status'], $progress['parts'] ) ? $progress : null;
	}

	/**
	 * @param string $id       Job id.
	 * @param array  $progress Its progress.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	private function save_progress( string $id, array $progress ): void {
		$this->spool->write_file( $id . self::PROGRESS_SUFFIX, array( Postbag_Batch::encode( $progress ) ) );
	}

	/**
	 * @param string $id Job id.
	 * @param int    $n  Part number.
	 */
	private static function part_file( string $id, int $n ): string {
		return sprintf( '%s.part-%05d.php', $id, $n );
	}

	/**
	 * @param string $key A part's object key.
	 */
	private static function part_number( string $key ): int {
		return (int) preg_replace( '/^.*part-(\d+)\.ndjson\.gz$/', '$1', $key );
	}

	/**
	 * @param string $id Job id.
	 * @param int    $n  Index among the job's attachments.
	 */
	private static function attachment_file( string $id, int $n ): string {
		return sprintf( '%s.att-%d.php', $id, $n );
	}
}
