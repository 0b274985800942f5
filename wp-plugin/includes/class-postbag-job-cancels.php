<?php
/**
 * Cancel requests for notify jobs: kept in the spool until they took effect.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * One spool file per cancelled job, `<job_id>.cancel.php`, written before
 * anything else happens so a cancel outlives any fault, in one of three states:
 *
 * - `requested`: not settled yet. Postbag_Jobs drops a job still in the spool
 *   (under its lock; a worker holding it checks before its manifest goes up);
 *   a job no longer in the spool gets `jobs/<job_id>/cancel` in the bucket
 *   (send()), which the sender looks for before each chunk. The object goes
 *   through Postbag_Schedule_Controls (the one helper for small documents on
 *   their way to the bucket): a failed PutObject waits in the spool there,
 *   backs off like a batch and is retried by the spool's cron events; the
 *   request is `stored` once the controls no longer hold it.
 * - `dropped`: the job was removed from the spool; its manifest never left, so
 *   nobody got it.
 * - `stored`: the cancel object is in the bucket.
 *
 * Settled requests are kept KEEP_SECONDS (as long as the sender keeps a job's
 * progress), so postbag_job_status() can still answer "cancelled", then pruned.
 */
final class Postbag_Job_Cancels {

	const SUFFIX = '.cancel.php';

	const REQUESTED = 'requested';
	const DROPPED   = 'dropped';
	const STORED    = 'stored';

	/** Seconds a settled request is kept: the sender's job progress lives 30 days too. */
	const KEEP_SECONDS = 30 * DAY_IN_SECONDS;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Schedule_Controls Puts the cancel object, and retries it. */
	private $controls;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Spool          $spool    Where requests wait.
	 * @param Postbag_Batch_Uploader $uploader Puts the cancel object.
	 * @param Postbag_Spool_Retry    $retry    Backoff.
	 * @param callable(): int        $clock    Current Unix time.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Batch_Uploader $uploader, Postbag_Spool_Retry $retry, callable $clock ) {
		$this->spool    = $spool;
		$this->controls = new Postbag_Schedule_Controls( $spool, $uploader, $retry, $clock ); // Its files are the plugin's controls' too.
		$this->clock    = $clock;
	}

	/**
	 * Records a cancel (a second call keeps the first request and its state).
	 *
	 * @param string $job_id A valid job id.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	public function request( string $job_id ): void {
		if ( null !== $this->get( $job_id ) ) {
			return;
		}
		$now = ( $this->clock )();
		$this->save(
			$job_id,
			array(
				'job_id'          => $job_id,
				'state'           => self::REQUESTED,
				'requested_at'    => $now,
				// The object's time, to the millisecond (the sender orders a job's requests by it).
				'stamp'           => Postbag_Send_Time::stamp( $now ),
				'settled_at'      => null,
				'handed_over'     => false,
			)
		);
	}

	/**
	 * @param string $job_id Job id.
	 * @return array|null The request (`state`, `requested_at`, `settled_at`, `handed_over`), or null.
	 */
	public function get( string $job_id ): ?array {
		$json    = $this->spool->read_file( $job_id . self::SUFFIX );
		$request = null === $json ? null : json_decode( $json, true );
		return is_array( $request ) && isset( $request['state'] ) ? $request : null;
	}

	/** Whether a cancel of this job waits to be settled. */
	public function requested( string $job_id ): bool {
		$request = $this->get( $job_id );
		return null !== $request && self::REQUESTED === $request['state'];
	}

	/**
	 * Ids of the jobs whose cancel is not settled yet.
	 *
	 * @return string[]
	 */
	public function requested_ids(): array {
		$ids = array();
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$id = substr( $name, 0, -strlen( self::SUFFIX ) );
			if ( $this->requested( $id ) ) {
				$ids[] = $id;
			}
		}
		return $ids;
	}

	/**
	 * The job was removed from the spool before its manifest left: settled.
	 *
	 * @param string $job_id Job id.
	 */
	public function dropped( string $job_id ): void {
		$this->settle( $job_id, self::DROPPED );
	}

	/**
	 * Puts `jobs/<job_id>/cancel` (the first time through the controls, later
	 * by retrying their request when it is due, or `$force`).
	 *
	 * @param string $job_id Job id, no longer in the spool.
	 * @param bool   $force  Ignore the backoff.
	 * @return bool Whether the cancel object is in the bucket now.
	 */
	public function send( string $job_id, bool $force ): bool {
		$request = $this->get( $job_id );
		if ( null === $request || self::STORED === $request['state'] ) {
			return null !== $request;
		}
		$key = Postbag_Job_Format_V2::cancel_key( $job_id );
		if ( empty( $request['handed_over'] ) ) {
			try {
				$stored = $this->controls->request(
					$key,
					array(
						'job_id'       => $job_id,
						'requested_at' => (string) ( $request['stamp'] ?? Postbag_Send_Time::stamp( (int) $request['requested_at'] ) ),
						'site'         => home_url(),
					)
				);
				$request['handed_over'] = true;
				$this->save( $job_id, $request );
			} catch ( Postbag_Spool_Exception $e ) {
				return false; // Handed over again on the next run: the same document, harmless.
			}
		} else {
			// Gone from the controls: the bucket has it (their cron may have put it).
			$stored = ! isset( $this->controls->pending()[ $key ] ) || 0 === $this->controls->run( $force, $key );
		}
		if ( $stored ) {
			$this->settle( $job_id, self::STORED );
		}
		return $stored;
	}

	/** Removes settled requests older than KEEP_SECONDS. */
	public function prune(): void {
		$before = ( $this->clock )() - self::KEEP_SECONDS;
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$request = $this->get( substr( $name, 0, -strlen( self::SUFFIX ) ) );
			if ( null !== $request && null !== $request['settled_at'] && (int) $request['settled_at'] < $before ) {
				$this->spool->delete_file( $name );
			}
		}
	}

	/**
	 * @param string $job_id Job id.
	 * @param string $state  DROPPED or STORED.
	 */
	private function settle( string $job_id, string $state ): void {
		$request = $this->get( $job_id );
		if ( null === $request ) {
			return;
		}
		$request['state']      = $state;
		$request['settled_at'] = ( $this->clock )();
		try {
			$this->save( $job_id, $request );
		} catch ( Postbag_Spool_Exception $e ) {
			// Left `requested`: settled again later, which is harmless either way (the job
			// is gone from the spool; a second cancel object changes nothing).
			unset( $e );
		}

		/**
		 * Fires when a notify job's cancel took effect.
		 *
		 * @param string $job_id Job id.
		 * @param string $where  'spool': removed before its manifest left, nobody got it;
		 *                       'bucket': `jobs/<job_id>/cancel` is stored, the sender stops
		 *                       before its next chunk (mails already sent stay sent).
		 */
		do_action( 'postbag_job_cancelled', $job_id, self::DROPPED === $state ? 'spool' : 'bucket' );
	}

	/**
	 * @param string $job_id  Job id.
	 * @param array  $request The request.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	private function save( string $job_id, array $request ): void {
		$this->spool->write_file( $job_id . self::SUFFIX, array( Postbag_Batch::encode( $request ) ) );
	}
}
