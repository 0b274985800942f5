<?php
/**
 * Keeps batches in the spool until S3 has them; retries failed ones from WP-Cron.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Keeps every batch in the spool until S3 has it, and retries the ones that
 * failed from WP-Cron with exponential backoff (60 s doubling to an hour,
 * plus jitter). Uploads go in waves of a bounded size read back from the
 * spool, so neither a flush of 100,000 mails nor a long outage's backlog
 * holds more than a wave in memory. A site may opt in to sending through
 * core after a while (`postbag_sync_fallback_after`); otherwise mail waits
 * until S3 takes it.
 */
final class Postbag_Spool_Retry {

	/** WP-Cron hook of the single events planned for each batch's next attempt. */
	const HOOK = 'postbag_retry_spool';

	/** WP-Cron hook of the hourly safety net, in case a single event is lost. */
	const HOURLY_HOOK = 'postbag_retry_spool_hourly';

	const BASE_DELAY = 60;

	const MAX_DELAY = 3600;

	/** Batches per run, oldest first, so a run ends in bounded time; the rest follow at once. */
	const BATCHES_PER_RUN = 100;

	/** Most batches handed to the uploader at once (twice its default concurrency). */
	const WAVE_BATCHES = 32;

	/** Most bytes (batch files and attachments) read back from the spool for one wave. */
	const WAVE_BYTES = 8 * 1024 * 1024;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Sync_Sender */
	private $sync;

	/** @var callable(): int */
	private $clock;

	/** @var int|null When the batches kept since the last after_keeping() are due. */
	private $kept_due;

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
	 * Writes a batch to the spool before its upload is tried. Its first
	 * attempt counts as due after the first backoff: if the process dies
	 * before uploading it, the retry takes it then, with every other batch of
	 * the same flush (they share the time). Call after_keeping() once the
	 * flush has kept its batches, so that retry is scheduled.
	 *
	 * @param Postbag_Batch $batch The batch.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	public function keep( Postbag_Batch $batch ): void {
		$now  = ( $this->clock )();
		$next = $this->kept_due ?? $now + $this->delay( 1 );
		$this->spool->write(
			$batch,
			array(
				'attempts'         => 0,
				'first_spooled_at' => $now,
				'next_attempt_at'  => $next,
				'last_error'       => '',
				'mails'            => count( $batch->mail_ids ),
			)
		);
		$this->kept_due = $next;
	}

	/**
	 * Schedules the retry of what keep() wrote, once per flush (not per
	 * batch): the event that uploads it if this process never does. Before the
	 * response ends, so a worker killed after it still leaves a retry planned.
	 */
	public function after_keeping(): void {
		if ( null === $this->kept_due ) {
			return;
		}
		self::ensure_hourly();
		// Refused when an event is already planned within ten minutes of it, which is as good.
		wp_schedule_single_event( $this->kept_due, self::HOOK );
		$this->kept_due = null;
	}

	/**
	 * The first upload of batches keep() wrote: those S3 took leave the
	 * spool; the others stay for the retry, and `postbag_batch_spooled` fires.
	 *
	 * @param string[] $ids Batch ids.
	 * @return array<string, string> Batch id => why its upload failed; a batch absent from it was uploaded.
	 */
	public function upload_kept( array $ids ): array {
		$failures = array();
		$this->upload(
			$ids,
			function ( string $id, ?Postbag_Batch $batch, string $reason ) use ( &$failures ): void {
				$failures[ $id ] = $reason;
				$state           = $this->spool->state( $id );
				if ( null !== $state ) {
					$state['attempts']   = max( 1, (int) ( $state['attempts'] ?? 0 ) );
					$state['last_error'] = $reason;
					try {
						$this->spool->save_state( $id, $state );
					} catch ( Postbag_Spool_Exception $e ) {
						unset( $e ); // The batch waits with its first state: retried all the same.
					}
				}
				/**
				 * Fires when a batch could not be uploaded and waits in the spool for a retry.
				 *
				 * @param string   $batch_id Batch id.
				 * @param string[] $mail_ids Ids of its mails.
				 * @param string   $reason   Why the upload failed.
				 */
				do_action( 'postbag_batch_spooled', $id, null === $batch ? array() : $batch->mail_ids, $reason );
			}
		);
		return $failures;
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
			$this->spool->upgrade();
			$now    = ( $this->clock )();
			$states = $this->due( $now, true === $force );

			$summary['uploaded'] = $this->upload(
				array_keys( $states ),
				function ( string $id, ?Postbag_Batch $batch, string $reason ) use ( $states, $now, &$summary ): void {
					++$summary['failed'];
					if ( null === $batch ) {
						// Left in place for an operator; the admin notice names it.
						$this->spool->save_state( $id, $this->attempt_failed( $states[ $id ], $reason, $now ) );
						return;
					}
					$summary['sent'] += $this->failed( $batch, $states[ $id ], $reason, $now );
				}
			);
		} finally {
			$this->spool->unlock();
		}
		$this->schedule();
		return $summary;
	}

	/**
	 * Uploads spooled batches in waves; a batch S3 took leaves the spool and
	 * `postbag_batch_uploaded` fires.
	 *
	 * @param string[] $ids        Batch ids.
	 * @param callable $on_failure Called with the id, the batch (null when it could not be read) and the reason.
	 * @return int Batches uploaded.
	 */
	private function upload( array $ids, callable $on_failure ): int {
		$uploaded = 0;
		foreach ( $this->waves( $ids ) as $wave ) {
			$batches = array();
			foreach ( $wave as $id ) {
				try {
					$batches[ $id ] = $this->spool->load( $id );
				} catch ( Postbag_Spool_Exception $e ) {
					if ( $this->spool->has( $id ) ) {
						$on_failure( $id, null, $e->getMessage() );
					} // Else another process uploaded it meanwhile.
				}
			}
			$failures = $this->uploader->upload( array_values( $batches ) );
			foreach ( $batches as $id => $batch ) {
				if ( isset( $failures[ $id ] ) ) {
					$on_failure( (string) $id, $batch, $failures[ $id ] );
					continue;
				}
				$this->spool->remove( (string) $id );
				/**
				 * Fires when a batch (and its attachments) is in the bucket.
				 *
				 * @param string   $batch_id Batch id.
				 * @param string[] $mail_ids Ids of its mails.
				 */
				do_action( 'postbag_batch_uploaded', (string) $id, $batch->mail_ids );
				++$uploaded;
			}
		}
		return $uploaded;
	}

	/**
	 * Cuts ids into waves of at most WAVE_BATCHES batches and WAVE_BYTES on
	 * disk (a larger batch goes alone).
	 *
	 * @param string[] $ids Batch ids.
	 * @return Generator<int, string[]>
	 */
	private function waves( array $ids ): Generator {
		$wave  = array();
		$bytes = 0;
		foreach ( $ids as $id ) {
			$size = $this->spool->size( (string) $id );
			if ( $wave && ( count( $wave ) >= self::WAVE_BATCHES || $bytes + $size > self::WAVE_BYTES ) ) {
				yield $wave;
				$wave  = array();
				$bytes = 0;
			}
			$wave[] = (string) $id;
			$bytes += $size;
		}
		if ( $wave ) {
			yield $wave;
		}
	}

	/**
	 * The batches due for an attempt, oldest first, at most BATCHES_PER_RUN.
	 *
	 * @param int  $now   Current time.
	 * @param bool $force Ignore the backoff.
	 * @return array<string, array> Batch id => state.
	 */
	private function due( int $now, bool $force ): array {
		$due = array();
		foreach ( $this->spool->states() as $id => $state ) {
			if ( ! $force && $state['next_attempt_at'] > $now ) {
				continue;
			}
			if ( count( $due ) >= self::BATCHES_PER_RUN ) {
				break;
			}
			$due[ (string) $id ] = $state;
		}
		return $due;
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
