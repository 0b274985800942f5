<?php
/**
 * Control objects for held jobs and batches: kept in the spool until they are in the bucket.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * One spool file per object key, `<sha1 of the key>.control.php`, holding
 * the latest document asked for that key: written before the PutObject is
 * tried, so a request outlives S3 being down, a crash, the end of the
 * request. A later request for the same key replaces the earlier one here,
 * and its `requested_at` lets the sender tell which is newer should both
 * reach the bucket (docs/job-format.md, "Scheduled jobs").
 *
 * A job's schedule waits until the job's manifest left this site's spool:
 * the sender ignores a request for a job it does not hold yet, and reads the
 * manifest's own time when it arrives (a job rescheduled while its
 * recipients are still read would otherwise keep its first time).
 *
 * A failed PutObject backs off like a batch (Postbag_Spool_Retry::delay())
 * and is retried by the spool's cron events; once the bucket has it, the
 * file goes, unless a newer request replaced it meanwhile (then that one is
 * put next).
 */
final class Postbag_Schedule_Controls {

	const SUFFIX = '.control.php';

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Spool_Retry Its backoff is the controls' too. */
	private $retry;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Spool          $spool    Where requests wait.
	 * @param Postbag_Batch_Uploader $uploader Puts the objects.
	 * @param Postbag_Spool_Retry    $retry    Backoff.
	 * @param callable(): int        $clock    Current Unix time.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Batch_Uploader $uploader, Postbag_Spool_Retry $retry, callable $clock ) {
		$this->spool    = $spool;
		$this->uploader = $uploader;
		$this->retry    = $retry;
		$this->clock    = $clock;
	}

	public function init(): void {
		// The spool's retry events retry controls too: one mechanism for everything waiting for S3.
		add_action( Postbag_Spool_Retry::HOOK, array( $this, 'run' ) );
		add_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'run' ) );
		// A job's manifest is in the bucket: its schedule may follow.
		add_action( 'postbag_job_uploaded', array( $this, 'run' ) );
	}

	public function remove(): void {
		remove_action( Postbag_Spool_Retry::HOOK, array( $this, 'run' ) );
		remove_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'run' ) );
		remove_action( 'postbag_job_uploaded', array( $this, 'run' ) );
	}

	/**
	 * Records `$doc` for `$key`, replacing any earlier request, then tries to put it.
	 *
	 * @param string      $key   Object key.
	 * @param array       $doc   Its JSON document.
	 * @param string|null $after A job whose manifest must leave the spool first.
	 * @return bool Whether it is in the bucket now (false: it waits in the spool, retried).
	 * @throws Postbag_Spool_Exception When the spool cannot be written (nothing was recorded).
	 */
	public function request( string $key, array $doc, ?string $after = null ): bool {
		$now = ( $this->clock )();
		$this->save(
			self::name( $key ),
			array(
				'key'             => $key,
				'body'            => Postbag_Batch::encode( $doc ),
				'after_job'       => $after,
				'requested_at'    => $now,
				'attempts'        => 0,
				'next_attempt_at' => $now,
				'last_error'      => '',
			)
		);
		return $this->send( self::name( $key ), true );
	}

	/**
	 * Puts every request that is due; the cron events' work.
	 *
	 * @param bool $force Ignore the backoff.
	 * @return int Requests still waiting.
	 */
	public function run( $force = false ): int {
		$waiting = 0;
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$waiting += $this->send( $name, true === $force ) ? 0 : 1;
		}
		return $waiting;
	}

	/**
	 * Requests waiting for the bucket.
	 *
	 * @return array<string, array> Key => `key`, `requested_at`, `attempts`, `last_error`.
	 */
	public function pending(): array {
		$pending = array();
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$request = $this->get( $name );
			if ( null !== $request ) {
				unset( $request['body'] );
				$pending[ $request['key'] ] = $request;
			}
		}
		return $pending;
	}

	/**
	 * @param string $name  Spool file of a request.
	 * @param bool   $force Ignore the backoff.
	 * @return bool Whether it is in the bucket (or gone).
	 */
	private function send( string $name, bool $force ): bool {
		$request = $this->get( $name );
		if ( null === $request ) {
			return true;
		}
		$now = ( $this->clock )();
		if ( ! $force && (int) $request['next_attempt_at'] > $now ) {
			return false;
		}
		if ( null !== ( $request['after_job'] ?? null ) && null !== $this->spool->read_file( $request['after_job'] . Postbag_Jobs::JOB_SUFFIX ) ) {
			return false; // Put once the job's manifest is up (`postbag_job_uploaded`).
		}
		$failures = $this->uploader->put( array( $request['key'] => $request['body'] ), 'application/json' );
		if ( ! isset( $failures[ $request['key'] ] ) ) {
			$now_stored = $this->get( $name );
			if ( null !== $now_stored && $now_stored['body'] !== $request['body'] ) {
				return $this->send( $name, true ); // Replaced while it went up: the newer one must win.
			}
			$this->spool->delete_file( $name );
			return true;
		}
		$request['attempts']        = (int) $request['attempts'] + 1;
		$request['last_error']      = $failures[ $request['key'] ];
		$request['next_attempt_at'] = $now + $this->retry->delay( $request['attempts'] );
		try {
			$this->save( $name, $request );
		} catch ( Postbag_Spool_Exception $e ) {
			unset( $e ); // Retried with its last saved backoff: sooner, which is harmless.
		}
		Postbag_Spool_Retry::ensure_hourly();
		// Refused when a retry is already planned within ten minutes of it, which is as good.
		wp_schedule_single_event( $request['next_attempt_at'], Postbag_Spool_Retry::HOOK );
		return false;
	}

	/**
	 * @param string $key Object key.
	 */
	private static function name( string $key ): string {
		return sha1( $key ) . self::SUFFIX;
	}

	/**
	 * @param string $name Spool file.
	 */
	private function get( string $name ): ?array {
		$json    = $this->spool->read_file( $name );
		$request = null === $json ? null : json_decode( $json, true );
		return is_array( $request ) && isset( $request['key'], $request['body'] ) ? $request : null;
	}

	/**
	 * @param string $name    Spool file.
	 * @param array  $request The request.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	private function save( string $name, array $request ): void {
		$this->spool->write_file( $name, array( Postbag_Batch::encode( $request ) ) );
	}
}
