<?php
/**
 * Scheduled jobs and batches: what waits on the sender's side, as this site knows it, and changing it.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Nothing scheduled waits in WordPress: jobs and batches with a send time go
 * to the bucket at once and the sender holds them. This class keeps the
 * site's own record of them, one spool file per job or batch
 * (`job-<id>.scheduled.php`, `batch-<id>.scheduled.php`: what, when, state),
 * so WordPress can list what is waiting without asking AWS, and asks the
 * sender to cancel or move them through control objects
 * (Postbag_Schedule_Controls: `jobs/<id>/schedule.json`,
 * `control/batches/<id>/cancel`, `control/batches/<id>/schedule.json`).
 * A job's cancel is postbag_cancel_job()'s (Postbag_Jobs, which also stops a
 * job still in the spool).
 *
 * The record is filled from `postbag_job_scheduled` and
 * `postbag_batch_scheduled` (the email log's recorder listens to them too,
 * and to `postbag_schedule_changed`). An entry whose time passed more than
 * KEEP_SECONDS ago, or cancelled that long ago, is pruned by the hourly event.
 * The sender's word is final: this record says what was asked, not what
 * was sent.
 */
final class Postbag_Schedules {

	const SUFFIX = '.scheduled.php';

	const KINDS = array( 'job', 'batch' );

	/** Seconds an entry is kept after its time (or its cancel): long enough to see what happened. */
	const KEEP_SECONDS = 7 * DAY_IN_SECONDS;

	/** Where a held batch's control objects go (the plugin's IAM policy names it too). */
	const BATCH_CONTROL_PREFIX = 'control/batches/';

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Schedule_Controls */
	private $controls;

	/** @var Postbag_Send_Time Reads the new times. */
	private $times;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Spool             $spool    Where the record is kept.
	 * @param Postbag_Schedule_Controls $controls Puts control objects.
	 * @param Postbag_Send_Time         $times    Reads send_at and send_between.
	 * @param callable(): int           $clock    Current Unix time.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Schedule_Controls $controls, Postbag_Send_Time $times, callable $clock ) {
		$this->spool    = $spool;
		$this->controls = $controls;
		$this->times    = $times;
		$this->clock    = $clock;
	}

	public function init(): void {
		add_action( 'postbag_job_scheduled', array( $this, 'job_scheduled' ), 10, 2 );
		add_action( 'postbag_batch_scheduled', array( $this, 'batch_scheduled' ), 10, 3 );
		add_action( 'postbag_job_cancelled', array( $this, 'job_cancelled' ) );
		add_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'prune' ) );
	}

	public function remove(): void {
		remove_action( 'postbag_job_scheduled', array( $this, 'job_scheduled' ), 10 );
		remove_action( 'postbag_batch_scheduled', array( $this, 'batch_scheduled' ), 10 );
		remove_action( 'postbag_job_cancelled', array( $this, 'job_cancelled' ) );
		remove_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'prune' ) );
	}

	/**
	 * @param string $job_id   Job id.
	 * @param array  $schedule `send_at`, `send_between`.
	 */
	public function job_scheduled( string $job_id, array $schedule ): void {
		$this->record( 'job', $job_id, $schedule, array() );
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $mail_ids Its mails.
	 * @param string   $send_at  UTC RFC 3339.
	 */
	public function batch_scheduled( string $batch_id, array $mail_ids, string $send_at ): void {
		$this->record(
			'batch',
			$batch_id,
			array(
				'send_at'      => $send_at,
				'send_between' => null,
			),
			$mail_ids
		);
	}

	/**
	 * A job's cancel took effect (`postbag_job_cancelled`).
	 *
	 * @param string $job_id Job id.
	 */
	public function job_cancelled( string $job_id ): void {
		$this->update( 'job', $job_id, array( 'state' => 'cancelled' ) );
	}

	/**
	 * What is scheduled, soonest first: `kind` (job, batch), `id`, `send_at`,
	 * `send_between`, `mails` (a batch's), `state` ('scheduled', 'due': its time
	 * came, the sender has it; 'cancelled'), `request` (a cancel or reschedule
	 * still waiting for S3: its `attempts` and `last_error`, else null),
	 * `created_at`, `updated_at` (UTC RFC 3339), `moved_at` (the latest reschedule's request time, absent until one).
	 *
	 * @return array[]
	 */
	public function listing(): array {
		$pending = $this->controls->pending();
		$now     = gmdate( Postbag_Send_Time::FORMAT, ( $this->clock )() );
		$entries = array();
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$entry = $this->read( $name );
			if ( null === $entry ) {
				continue;
			}
			if ( 'scheduled' === $entry['state'] && self::starts( $entry ) <= $now ) {
				$entry['state'] = 'due';
			}
			$request          = array_intersect_key( $pending, array_flip( $this->control_keys( $entry['kind'], $entry['id'] ) ) );
			$entry['request'] = $request ? array_intersect_key( reset( $request ), array_flip( array( 'attempts', 'last_error' ) ) ) : null;
			unset( $entry['mail_ids'] );
			$entries[] = $entry;
		}
		usort(
			$entries,
			static function ( array $a, array $b ): int {
				return self::starts( $a ) <=> self::starts( $b );
			}
		);
		return $entries;
	}

	/**
	 * postbag_reschedule_job() and postbag_reschedule_mail_batch().
	 *
	 * @param string $kind 'job' or 'batch'.
	 * @param mixed  $id   Its id.
	 * @param mixed  $when `send_at` (null: now) or `send_between`, as postbag_notify() takes them.
	 * @return true|WP_Error True once the request is recorded (in the bucket, or waiting in the
	 *                       spool for S3); an error naming the field for a bad id or time, a
	 *                       cancelled one, or a spool that cannot be written.
	 */
	public function reschedule( string $kind, $id, $when ) {
		$error = self::bad_id( $kind, $id );
		if ( null !== $error ) {
			return $error;
		}
		if ( ! is_array( $when ) || 1 !== count( $when ) || ! ( array_key_exists( 'send_at', $when ) || array_key_exists( 'send_between', $when ) ) ) {
			return new WP_Error( 'postbag_invalid_schedule', 'Give exactly one of send_at (null: now) and send_between.', array( 'field' => 'send_at' ) );
		}
		if ( 'batch' === $kind && array_key_exists( 'send_between', $when ) ) {
			return new WP_Error( 'postbag_invalid_schedule', 'A mail batch has a send_at only; send_between spreads notify jobs.', array( 'field' => 'send_between' ) );
		}
		try {
			$schedule = $this->times->schedule( $when['send_at'] ?? null, $when['send_between'] ?? null );
		} catch ( Postbag_Mail_Exception $e ) {
			return new WP_Error( $e->reason, $e->getMessage(), array( 'field' => $e->field ) );
		}
		$entry = $this->read( self::file( $kind, $id ) );
		if ( null !== $entry && 'cancelled' === $entry['state'] ) {
			return new WP_Error( 'postbag_cancelled', sprintf( 'The %s %s was cancelled: it cannot be moved.', $kind, $id ), array( 'field' => "{$kind}_id" ) );
		}
		$doc = array(
			'version'      => 1,
			'send_at'      => $schedule['send_at'],
			'send_between' => $schedule['send_between'],
			'requested_at' => Postbag_Send_Time::stamp( ( $this->clock )() ),
		);
		$key = 'job' === $kind ? Postbag_Job_Format_V2::schedule_key( $id ) : self::BATCH_CONTROL_PREFIX . $id . '/schedule.json';
		// moved_at: the record says it was moved, whatever second it was made in.
		return $this->control( $key, $doc, $kind, $id, $schedule + array( 'moved_at' => $doc['requested_at'] ), 'job' === $kind ? $id : null );
	}

	/**
	 * postbag_cancel_mail_batch(): `control/batches/<id>/cancel`, and the batch
	 * leaves this site's spool if it still waits there for S3 (its mails
	 * logged cancelled: the sender never had it). A batch in the spool that
	 * this site did not schedule is refused: it waits out an S3 outage, to be
	 * sent, not cancelled. A batch in neither is asked for all the same (the
	 * record may have been pruned; the sender answers whether it held it).
	 *
	 * @param mixed $batch_id Batch id.
	 * @return true|WP_Error See reschedule(); `postbag_not_scheduled` (field batch_id) for a spooled batch this site did not schedule.
	 */
	public function cancel_batch( $batch_id ) {
		$error = self::bad_id( 'batch', $batch_id );
		if ( null !== $error ) {
			return $error;
		}
		$changes = array( 'state' => 'cancelled' );
		if ( $this->spool->has( $batch_id ) && null === $this->read( self::file( 'batch', $batch_id ) ) ) {
			return new WP_Error( 'postbag_not_scheduled', sprintf( 'The batch %s waits in the spool for S3 but was not scheduled: it is sent once S3 answers, and cannot be cancelled.', $batch_id ), array( 'field' => 'batch_id' ) );
		}
		if ( $this->spool->has( $batch_id ) && $this->spool->lock() ) {
			try {
				// Never uploaded: nobody gets it. The cancel below covers a race with an upload.
				$this->spool->remove( $batch_id );
				$changes['spool'] = ! $this->spool->has( $batch_id );
			} finally {
				$this->spool->unlock();
			}
		}
		$doc = array(
			'version'      => 1,
			'batch_id'     => $batch_id,
			'requested_at' => Postbag_Send_Time::stamp( ( $this->clock )() ),
			'site'         => home_url(),
		);
		return $this->control( self::BATCH_CONTROL_PREFIX . $batch_id . '/cancel', $doc, 'batch', $batch_id, $changes );
	}

	/** Removes entries whose time, or cancel, is more than KEEP_SECONDS old. */
	public function prune(): void {
		$before = gmdate( Postbag_Send_Time::FORMAT, ( $this->clock )() - self::KEEP_SECONDS );
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$entry = $this->read( $name );
			if ( null !== $entry && max( self::ends( $entry ), $entry['updated_at'] ) < $before ) {
				$this->spool->delete_file( $name );
			}
		}
	}

	/**
	 * Records the request for the sender, then the change in the record.
	 *
	 * @param string      $key     Control object key.
	 * @param array       $doc     Its document.
	 * @param string      $kind    'job' or 'batch'.
	 * @param string      $id      Its id.
	 * @param array       $changes To the record's entry.
	 * @param string|null $after   A job whose manifest must be in the bucket first.
	 * @return true|WP_Error
	 */
	private function control( string $key, array $doc, string $kind, string $id, array $changes, ?string $after = null ) {
		try {
			$this->controls->request( $key, $doc, $after );
		} catch ( Postbag_Spool_Exception $e ) {
			return new WP_Error( 'postbag_spool_unavailable', $e->getMessage(), array( 'field' => 'spool' ) );
		}
		$this->update( $kind, $id, $changes );
		$entry = $this->read( self::file( $kind, $id ) );

		/**
		 * Fires when a scheduled job or batch was cancelled or moved (the request is recorded; the sender acts on it).
		 *
		 * @param string   $kind     'job' or 'batch'.
		 * @param string   $id       Its id.
		 * @param array    $changes  `state` => 'cancelled', or the new `send_at` and `send_between`.
		 * @param string[] $mail_ids A batch's mails, as this site recorded them (none for a job, or a batch it did not record).
		 */
		do_action( 'postbag_schedule_changed', $kind, $id, $changes, $entry['mail_ids'] ?? array() );
		return true;
	}

	/**
	 * @param string   $kind     'job' or 'batch'.
	 * @param string   $id       Its id.
	 * @param array    $schedule `send_at`, `send_between`.
	 * @param string[] $mail_ids A batch's mails.
	 */
	private function record( string $kind, string $id, array $schedule, array $mail_ids ): void {
		$now = gmdate( Postbag_Send_Time::FORMAT, ( $this->clock )() );
		$this->write(
			$kind,
			$id,
			array(
				'kind'         => $kind,
				'id'           => $id,
				'send_at'      => $schedule['send_at'],
				'send_between' => $schedule['send_between'],
				'mails'        => 'batch' === $kind ? count( $mail_ids ) : null,
				'mail_ids'     => $mail_ids,
				'state'        => 'scheduled',
				'created_at'   => $now,
				'updated_at'   => $now,
			)
		);
	}

	/**
	 * Changes a recorded entry; one this site never recorded (or pruned) is left unrecorded.
	 *
	 * @param string $kind    'job' or 'batch'.
	 * @param string $id      Its id.
	 * @param array  $changes Fields.
	 */
	private function update( string $kind, string $id, array $changes ): void {
		$entry = $this->read( self::file( $kind, $id ) );
		if ( null !== $entry ) {
			$changes['updated_at'] = gmdate( Postbag_Send_Time::FORMAT, ( $this->clock )() );
			$this->write( $kind, $id, array_merge( $entry, $changes ) );
		}
	}

	/**
	 * @param string $kind  'job' or 'batch'.
	 * @param string $id    Its id.
	 * @param array  $entry The entry.
	 */
	private function write( string $kind, string $id, array $entry ): void {
		try {
			$this->spool->write_file( self::file( $kind, $id ), array( Postbag_Batch::encode( $entry ) ) );
		} catch ( Postbag_Spool_Exception $e ) {
			unset( $e ); // Only the listing misses it: the job or batch itself is in the bucket or the spool.
		}
	}

	/**
	 * @param string $name Spool file.
	 */
	private function read( string $name ): ?array {
		$json  = $this->spool->read_file( $name );
		$entry = null === $json ? null : json_decode( $json, true );
		return is_array( $entry ) && isset( $entry['kind'], $entry['id'], $entry['state'] ) ? $entry : null;
	}

	/**
	 * @param string $kind 'job' or 'batch'.
	 * @param string $id   Its id.
	 */
	private static function file( string $kind, string $id ): string {
		return $kind . '-' . $id . self::SUFFIX;
	}

	/**
	 * Keys of the control objects of a job or batch (a job's cancel is Postbag_Job_Cancels').
	 *
	 * @param string $kind 'job' or 'batch'.
	 * @param string $id   Its id.
	 * @return string[]
	 */
	private function control_keys( string $kind, string $id ): array {
		if ( 'job' === $kind ) {
			return array( Postbag_Job_Format_V2::schedule_key( $id ) );
		}
		return array( self::BATCH_CONTROL_PREFIX . $id . '/cancel', self::BATCH_CONTROL_PREFIX . $id . '/schedule.json' );
	}

	/**
	 * When an entry's sending starts (UTC RFC 3339 sorts as text).
	 *
	 * @param array $entry An entry.
	 */
	private static function starts( array $entry ): string {
		return (string) ( $entry['send_between']['start'] ?? $entry['send_at'] ?? $entry['created_at'] );
	}

	/**
	 * When an entry's sending should be over.
	 *
	 * @param array $entry An entry.
	 */
	private static function ends( array $entry ): string {
		return (string) ( $entry['send_between']['end'] ?? $entry['send_at'] ?? $entry['created_at'] );
	}

	/**
	 * @param string $kind 'job' or 'batch'.
	 * @param mixed  $id   What the caller passed.
	 */
	private static function bad_id( string $kind, $id ): ?WP_Error {
		if ( Postbag_Job_Format_V2::is_job_id( $id ) ) {
			return null;
		}
		return new WP_Error( "postbag_invalid_{$kind}_id", sprintf( 'A %s id is 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit.', $kind ), array( 'field' => "{$kind}_id" ) );
	}
}
