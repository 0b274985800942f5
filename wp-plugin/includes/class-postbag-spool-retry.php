<?php
/**
 * Spools failed batches and retries them from WP-Cron.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Keeps a batch that could not be uploaded in the spool and retries it from
 * WP-Cron with exponential backoff (60 s doubling to an hour, plus jitter).
 * A site may opt in to sending through core after a while
 * (`postbag_sync_fallback_after`); otherwise mail waits until S3 takes it.
 */
final class Postbag_Spool_Retry {

	/** WP-Cron hook of the single events planned for each batch's next attempt. */
	const HOOK = 'postbag_retry_spool';

	/** WP-Cron hook of the hourly safety net, in case a single event is lost. */
	const HOURLY_HOOK = 'postbag_retry_spool_hourly';

	const BASE_DELAY = 60;

	const MAX_DELAY = 3600;

	/** Batches per run, oldest first, so a long outage's backlog never exhausts memory; the rest follow at once. */
	const BATCHES_PER_RUN = 100;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Sync_Sender */
	private $sync;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Spool          $spool    Where batches wait.
	 * @param Postbag_Batch_Uploader $uploader Uploads them.
	 * @param Postbag_Sync_Sender    $sync     Sends through core when the site opted in.
	 * @param callable(): int        $clock    Current Unix time.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Batch_Uploader $uploader, Postbag_Sync_Sender $sync, callable $clock ) {
		$this->spool    = $spool;
		$this->uploader = $uploader;
		$this->sync     = $sync;
		$this->clock    = $clock;
	}

	public function init(): void {
		add_action( self::HOOK, array( $this, 'run' ) );
		add_action( self::HOURLY_HOOK, array( $this, 'run' ) );
	}

	public function remove(): void {
		remove_action( self::HOOK, array( $this, 'run' ) );
		remove_action( self::HOURLY_HOOK, array( $this, 'run' ) );
	}

	/**
	 * The hourly safety net, on the current site. Run on activation and whenever
	 * a batch is spooled: on multisite, and where the plugin was installed
	 * without activation (a must-use plugin), no activation hook ever ran.
	 */
	public static function ensure_hourly(): void {
		if ( ! wp_next_scheduled( self::HOURLY_HOOK ) ) {
			wp_schedule_event( time(), 'hourly', self::HOURLY_HOOK );
		}
	}

	/** Removes every retry event of the current site. */
	public static function unschedule(): void {
		wp_clear_scheduled_hook( self::HOOK );
		wp_clear_scheduled_hook( self::HOURLY_HOOK );
	}

	/**
	 * Keeps a batch whose upload failed. Call after_spooling() once the
	 * request's batches are spooled, so its retry is scheduled.
	 *
	 * @param Postbag_Batch $batch  The batch.
	 * @param string        $reason Why the upload failed.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	public function spool( Postbag_Batch $batch, string $reason ): void {
		$now = ( $this->clock )();
		$this->spool->write(
			$batch,
			array(
				'attempts'         => 1,
				'first_spooled_at' => $now,
				'next_attempt_at'  => $now + $this->delay( 1 ),
				'last_error'       => $reason,
				'mails'            => count( $batch->mail_ids ),
			)
		);
	}

	/**
	 * Schedules the retries of what spool() kept: once per flush, not per
	 * batch, since scheduling reads every state file of the spool.
	 */
	public function after_spooling(): void {
		self::ensure_hourly();
		$this->schedule();
	}

	/**
	 * Retries the batches that are due (all of them when forced).
	 *
	 * @param bool $force Ignore the backoff (the admin's "Retry now").
	 * @return array{uploaded: int, failed: int, sent: int} Batches uploaded, still failing, and mails sent through core.
	 */
	public function run( $force = false ): array {
		$summary = array(
			'uploaded' => 0,
			'failed'   => 0,
			'sent'     => 0,
		);
		if ( ! $this->spool->lock() ) {
			return $summary; // Another run is at it.
		}
		try {
			$now = ( $this->clock )();
			list( $batches, $states ) = $this->due( $now, true === $force, $summary );
			$failures = $this->uploader->upload( array_values( $batches ) );
			foreach ( $batches as $id => $batch ) {
				if ( isset( $failures[ $id ] ) ) {
					$summary['sent'] += $this->failed( $batch, $states[ $id ], $failures[ $id ], $now );
					++$summary['failed'];
				} else {
					$this->spool->remove( $id );
					/** This action is documented in includes/class-postbag-flusher.php */
					do_action( 'postbag_batch_uploaded', $id, $batch->mail_ids );
					++$summary['uploaded'];
				}
			}
		} finally {
			$this->spool->unlock();
		}
		$this->schedule();
		return $summary;
	}

	/**
	 * Loads the batches due for an attempt, oldest first, at most BATCHES_PER_RUN.
	 *
	 * @param int   $now     Current time.
	 * @param bool  $force   Ignore the backoff.
	 * @param array $summary Counts a damaged batch as failed.
	 * @return array{0: array<string, Postbag_Batch>, 1: array<string, array>} Batches and their states, by id.
	 */
	private function due( int $now, bool $force, array &$summary ): array {
		$batches = array();
		$states  = array();
		foreach ( $this->spool->states() as $id => $state ) {
			if ( ! $force && $state['next_attempt_at'] > $now ) {
				continue;
			}
			if ( count( $batches ) >= self::BATCHES_PER_RUN ) {
				break;
			}
			try {
				$batches[ $id ] = $this->spool->load( $id );
				$states[ $id ]  = $state;
			} catch ( Postbag_Spool_Exception $e ) {
				// Left in place for an operator; the admin notice names it.
				$this->spool->save_state( $id, $this->attempt_failed( $state, $e->getMessage(), $now ) );
				++$summary['failed'];
			}
		}
		return array( $batches, $states );
	}

	/**
	 * Backoff before attempt `$attempts + 1`: 60 s, 120 s, 240 s ... at most an hour, plus up to 10 % jitter.
	 *
	 * @param int $attempts Failed attempts so far.
	 */
	public function delay( int $attempts ): int {
		$delay = (int) min( self::MAX_DELAY, self::BASE_DELAY * 2 ** min( $attempts - 1, 16 ) );
		return $delay + random_int( 0, intdiv( $delay, 10 ) );
	}

	/**
	 * A batch's state after one more failed attempt, with its next one backed off.
	 *
	 * @param array  $state  Its state.
	 * @param string $reason Why the attempt failed.
	 * @param int    $now    Current time.
	 */
	private function attempt_failed( array $state, string $reason, int $now ): array {
		$state['attempts']        = ( $state['attempts'] ?? 0 ) + 1;
		$state['last_error']      = $reason;
		$state['next_attempt_at'] = $now + $this->delay( $state['attempts'] );
		return $state;
	}

	/**
	 * Records a failed attempt, or sends through core once the site's fallback time has passed.
	 *
	 * @param Postbag_Batch $batch  The batch.
	 * @param array         $state  Its state.
	 * @param string        $reason Why the upload failed.
	 * @param int           $now    Current time.
	 * @return int Mails sent through core.
	 */
	private function failed( Postbag_Batch $batch, array $state, string $reason, int $now ): int {
		$state = $this->attempt_failed( $state, $reason, $now );

		/**
		 * Filters after how many seconds in the spool a batch is sent through
		 * core wp_mail() instead of waiting for S3. 0 (the default) waits for S3.
		 *
		 * @param int   $seconds Seconds since the batch was first spooled; 0 for never.
		 * @param array $state   The batch's spool state.
		 */
		$after = (int) apply_filters( 'postbag_sync_fallback_after', 0, $state );
		if ( $after <= 0 || $now - $state['first_spooled_at'] < $after ) {
			$this->spool->save_state( $batch->id, $state );
			return 0;
		}
		$sent = $this->sync->send( $batch );
		$left = array_values( array_diff( $batch->mail_ids, $sent ) );
		if ( ! $left ) {
			$this->spool->remove( $batch->id );
		} else {
			$state['mails']      = count( $left );
			$state['last_error'] = $reason . '; sending through wp_mail() failed too';
			$this->spool->write( Postbag_Batch_Format::of( $batch )->subset( $batch, $left ), $state );
		}
		return count( $sent );
	}

	/** Wakes WP-Cron when the earliest spooled batch is due. */
	private function schedule(): void {
		$due = array_column( $this->spool->states(), 'next_attempt_at' );
		if ( $due ) {
			// Refused when a run is already planned within ten minutes of it, which is as good.
			wp_schedule_single_event( max( (int) min( $due ), ( $this->clock )() ), self::HOOK );
		}
	}
}
