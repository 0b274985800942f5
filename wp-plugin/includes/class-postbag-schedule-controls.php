<?php
/**
 * Small JSON documents for the sender (control objects for held jobs and
 * batches, suppression inbox documents): kept in the spool until they are in the bucket.
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
 * put next). Due requests go up together, PER_RUN at a time, in one
 * Postbag_Batch_Uploader::put() (parallel requests), so a backlog after an
 * outage costs one round of timeouts, not one per document.
 *
 * This is the one "spool a small document, put it, back off" helper: the
 * suppression inbox (Postbag_Suppression_Inbox) records its documents here
 * too, deferred: they go up after the response (the public unsubscribe
 * endpoint answers without waiting for S3).
 */
final class Postbag_Schedule_Controls {

	const SUFFIX = '.control.php';

	/** Requests put per call to the uploader, so a run ends in bounded time; the rest follow. */
	const PER_RUN = 500;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Spool_Retry Its backoff is the controls' too. */
	private $retry;

	/** @var callable(): int */
	private $clock;

	/** @var bool Requests were recorded by this request to go up after the response. */
	private $deferred = false;

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
		// After the flusher (100), which finishes the response when it has work.
		add_action( 'shutdown', array( $this, 'after_response' ), 110 );
	}

	public function remove(): void {
		remove_action( Postbag_Spool_Retry::HOOK, array( $this, 'run' ) );
		remove_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'run' ) );
		remove_action( 'postbag_job_uploaded', array( $this, 'run' ) );
		remove_action( 'shutdown', array( $this, 'after_response' ), 110 );
	}

	/**
	 * Records `$doc` for `$key`, replacing any earlier request, then tries to put it.
	 *
	 * @param string      $key   Object key.
	 * @param array       $doc   Its JSON document.
	 * @param string|null $after A job whose manifest must leave the spool first.
	 * @param bool        $defer Put it after the response, not now (then false is returned).
	 * @return bool Whether it is in the bucket now (false: it waits in the spool, retried).
	 * @throws Postbag_Spool_Exception When the spool cannot be written (nothing was recorded).
	 */
	public function request( string $key, array $doc, ?string $after = null, bool $defer = false ): bool {
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
		if ( $defer ) {
			$this->deferred = true;
			// Planned before the response, so a worker killed after it still leaves a retry.
			Postbag_Spool_Retry::ensure_hourly();
			wp_schedule_single_event( $now + $this->retry->delay( 1 ), Postbag_Spool_Retry::HOOK );
			return false;
		}
		return 0 === $this->send( array( self::name( $key ) ), true );
	}

	/** The shutdown work: this request's deferred documents, once the response is finished. */
	public function after_response(): void {
		if ( ! $this->deferred ) {
			return;
		}
		$this->deferred = false;
		if ( function_exists( 'fastcgi_finish_request' ) ) {
			fastcgi_finish_request(); // Nobody waits for S3: the documents are on disk already.
		}
		$this->run( true );
	}

	/**
	 * Puts every request that is due; the cron events' work.
	 *
	 * @param bool   $force  Ignore the backoff.
	 * @param string $prefix Only requests whose key starts with it ('' for all).
	 * @return int Requests (of the prefix) still waiting.
	 */
	public function run( $force = false, string $prefix = '' ): int {
		$names = array();
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$request = $this->get( $name );
			if ( null !== $request && ( '' === $prefix || 0 === strpos( $request['key'], $prefix ) ) ) {
				$names[] = $name;
			}
		}
		return $this->send( $names, true === $force );
	}

	/**
	 * Requests waiting for the bucket.
	 *
	 * @return array<string, array> Key => `key`, `requested_at`, `attempts`, `last_error`.
	 */
	public function pending(): array {
		$pending = array();
		foreach ( $this->documents( '' ) as $key => $request ) {
			unset( $request['doc'] );
			$pending[ $key ] = $request;
		}
		return $pending;
	}

	/**
	 * Requests waiting for the bucket with their documents.
	 *
	 * @param string $prefix Only keys that start with it ('' for all).
	 * @return array<string, array> Key => `key`, `doc` (decoded), `requested_at`, `attempts`, `next_attempt_at`, `last_error`.
	 */
	public function documents( string $prefix ): array {
		$documents = array();
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$request = $this->get( $name );
			if ( null !== $request && ( '' === $prefix || 0 === strpos( $request['key'], $prefix ) ) ) {
				$request['doc'] = json_decode( $request['body'], true );
				unset( $request['body'] );
				$documents[ $request['key'] ] = $request;
			}
		}
		return $documents;
	}

	/**
	 * Puts those of these requests that are due, PER_RUN per uploader call;
	 * a failure backs off.
	 *
	 * @param string[] $names Spool files of requests.
	 * @param bool     $force Ignore the backoff.
	 * @return int How many are still waiting (backing off, after a job, refused, or past PER_RUN).
	 */
	private function send( array $names, bool $force ): int {
		$now     = ( $this->clock )();
		$due     = array();
		$waiting = 0;
		foreach ( $names as $name ) {
			$request = $this->get( $name );
			if ( null === $request ) {
				continue;
			}
			$after = $request['after_job'] ?? null;
			if ( ( ! $force && (int) $request['next_attempt_at'] > $now ) || count( $due ) >= self::PER_RUN
				// Put once the job's manifest is up (`postbag_job_uploaded`).
				|| ( null !== $after && null !== $this->spool->read_file( $after . Postbag_Jobs::JOB_SUFFIX ) ) ) {
				++$waiting;
				continue;
			}
			$due[ $name ] = $request;
		}
		if ( ! $due ) {
			return $waiting;
		}
		$failures = $this->uploader->put( array_column( $due, 'body', 'key' ), 'application/json' );
		$replaced = array();
		foreach ( $due as $name => $request ) {
			if ( ! isset( $failures[ $request['key'] ] ) ) {
				$now_stored = $this->get( $name );
				if ( null !== $now_stored && $now_stored['body'] !== $request['body'] ) {
					$replaced[] = $name; // Replaced while it went up: the newer one must win.
				} else {
					$this->spool->delete_file( $name );
				}
				continue;
			}
			++$waiting;
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
		}
		return $waiting + ( $replaced ? $this->send( $replaced, true ) : 0 );
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
