<?php
/**
 * Suppression changes on their way to the sender, and the sender's list on its way back.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Out: every change made on the site (an unsubscribe, an administrator's add
 * or remove) becomes `suppressions/inbox/<uuid>.json` (docs/exactly-once.md,
 * "Suppression"). The document is written to the spool first,
 * `<uuid>.suppression.php`, before the visitor gets an answer, and uploaded
 * after the response; a failed upload backs off like a batch
 * (Postbag_Spool_Retry::delay()) and is retried by the spool's cron events,
 * so a change made while S3 is down reaches the sender once it is back.
 * Uploading a document twice is harmless: the sender applies it by its
 * content, and its name is a UUID.
 *
 * In: the spool's hourly event reads `suppressions/export.json` and mirrors
 * it into the local table (Postbag_Suppressions::mirror()). The export's
 * SHA-256 is kept in the spool so an unchanged export costs one GET and no
 * database work (the S3 client has no conditional GET).
 */
final class Postbag_Suppression_Inbox {

	const SUFFIX = '.suppression.php';

	const PREFIX = 'suppressions/inbox/';

	const EXPORT_KEY = 'suppressions/export.json';

	/** The spool file remembering the last export mirrored. */
	const EXPORT_STATE = 'suppressions-export.sha.php';

	/** Documents uploaded per run, so a run ends in bounded time; the rest follow on the next. */
	const PER_RUN = 500;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Spool_Retry Its backoff is the inbox's too. */
	private $retry;

	/** @var Postbag_Suppressions */
	private $table;

	/** @var callable(): int */
	private $clock;

	/** @var bool Documents were spooled by this request: upload them after the response. */
	private $pending = false;

	/**
	 * @param Postbag_Spool          $spool    Where documents wait.
	 * @param Postbag_Batch_Uploader $uploader Puts and gets objects.
	 * @param Postbag_Spool_Retry    $retry    Backoff.
	 * @param Postbag_Suppressions   $table    The local list.
	 * @param callable(): int        $clock    Current Unix time.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Batch_Uploader $uploader, Postbag_Spool_Retry $retry, Postbag_Suppressions $table, callable $clock ) {
		$this->spool    = $spool;
		$this->uploader = $uploader;
		$this->retry    = $retry;
		$this->table    = $table;
		$this->clock    = $clock;
	}

	public function init(): void {
		// After the flusher (100), which finishes the response when it has work.
		add_action( 'shutdown', array( $this, 'after_response' ), 110 );
		add_action( Postbag_Spool_Retry::HOOK, array( $this, 'send' ) );
		add_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'send' ) );
		add_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'sync' ) );
	}

	public function remove(): void {
		remove_action( 'shutdown', array( $this, 'after_response' ), 110 );
		remove_action( Postbag_Spool_Retry::HOOK, array( $this, 'send' ) );
		remove_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'send' ) );
		remove_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'sync' ) );
	}

	/**
	 * Records a change locally and spools its inbox document.
	 *
	 * @param string $action  `add` or `remove`.
	 * @param string $scope   Postbag_Suppressions::scope().
	 * @param string $address Bare address.
	 * @param string $reason  `unsubscribe` or `manual`.
	 * @return string The document's id.
	 * @throws Postbag_Spool_Exception When the spool cannot be written (the local table is changed all the same).
	 */
	public function change( string $action, string $scope, string $address, string $reason ): string {
		$now = ( $this->clock )();
		if ( 'add' === $action ) {
			$this->table->add( $address, $scope, $reason, 'site', $now );
		} else {
			$this->table->remove( Postbag_Suppressions::hash( $address ), $scope );
		}
		$id  = wp_generate_uuid4();
		$doc = array(
			'version' => 1,
			'action'  => $action,
			'scope'   => $scope,
			'address' => Postbag_Suppressions::normalise( $address ),
			'reason'  => $reason,
			'source'  => 'site',
			'site'    => home_url(),
			'at'      => gmdate( 'Y-m-d\TH:i:s\Z', $now ),
		);
		$this->spool->write_file(
			$id . self::SUFFIX,
			array(
				Postbag_Batch::encode(
					array(
						'doc'             => $doc,
						'attempts'        => 0,
						'next_attempt_at' => $now,
						'last_error'      => '',
					)
				),
			)
		);
		$this->pending = true;
		// Planned before the response, so a worker killed after it still leaves a retry.
		Postbag_Spool_Retry::ensure_hourly();
		wp_schedule_single_event( $now + $this->retry->delay( 1 ), Postbag_Spool_Retry::HOOK );
		return $id;
	}

	/** The shutdown work: this request's documents, once the response is finished. */
	public function after_response(): void {
		if ( ! $this->pending ) {
			return;
		}
		$this->pending = false;
		if ( function_exists( 'fastcgi_finish_request' ) ) {
			fastcgi_finish_request(); // Nobody waits for S3: the document is on disk already.
		}
		$this->send( true );
	}

	/**
	 * Uploads the documents that are due (all with `$force`): those S3 took
	 * leave the spool, the others back off.
	 *
	 * @param bool $force Ignore the backoff.
	 * @return array{uploaded: int, failed: int}
	 */
	public function send( $force = false ): array {
		$now    = ( $this->clock )();
		$due    = array();
		$counts = array(
			'uploaded' => 0,
			'failed'   => 0,
		);
		foreach ( array_slice( $this->spool->names( '*' . self::SUFFIX ), 0, self::PER_RUN ) as $name ) {
			$entry = json_decode( (string) $this->spool->read_file( $name ), true );
			if ( is_array( $entry ) && isset( $entry['doc'] ) && ( true === $force || (int) $entry['next_attempt_at'] <= $now ) ) {
				$due[ self::PREFIX . substr( $name, 0, -strlen( self::SUFFIX ) ) . '.json' ] = array( $name, $entry );
			}
		}
		if ( ! $due ) {
			return $counts;
		}
		$failures = $this->uploader->put( array_map( array( __CLASS__, 'body' ), $due ), 'application/json' );
		foreach ( $due as $key => list( $name, $entry ) ) {
			if ( ! isset( $failures[ $key ] ) ) {
				$this->spool->delete_file( $name );
				++$counts['uploaded'];
				continue;
			}
			++$counts['failed'];
			$entry['attempts']        = (int) $entry['attempts'] + 1;
			$entry['last_error']      = $failures[ $key ];
			$entry['next_attempt_at'] = $now + $this->retry->delay( $entry['attempts'] );
			try {
				$this->spool->write_file( $name, array( Postbag_Batch::encode( $entry ) ) );
			} catch ( Postbag_Spool_Exception $e ) {
				unset( $e ); // Retried with its last saved backoff: sooner, which is harmless.
			}
			Postbag_Spool_Retry::ensure_hourly();
			wp_schedule_single_event( $entry['next_attempt_at'], Postbag_Spool_Retry::HOOK );
		}
		return $counts;
	}

	/**
	 * Documents waiting in the spool, oldest attempt first (Site Health, tests).
	 *
	 * @return array<string, array> Document id => `doc`, `attempts`, `next_attempt_at`, `last_error`.
	 */
	public function waiting(): array {
		$waiting = array();
		foreach ( $this->spool->names( '*' . self::SUFFIX ) as $name ) {
			$entry = json_decode( (string) $this->spool->read_file( $name ), true );
			if ( is_array( $entry ) ) {
				$waiting[ substr( $name, 0, -strlen( self::SUFFIX ) ) ] = $entry;
			}
		}
		return $waiting;
	}

	/**
	 * Reads the sender's export and mirrors it when it changed.
	 *
	 * @return string What happened: `unchanged`, `mirrored: <counts>`, or why nothing was read.
	 */
	public function sync(): string {
		$result = $this->uploader->get( self::EXPORT_KEY );
		if ( ! $result->ok ) {
			return 404 === $result->status ? 'no export yet' : 'read failed: ' . $result->error;
		}
		$sha = hash( 'sha256', $result->body );
		if ( $sha === $this->spool->read_file( self::EXPORT_STATE ) ) {
			return 'unchanged';
		}
		$export = json_decode( $result->body, true );
		if ( ! is_array( $export ) || 1 !== ( $export['version'] ?? null ) || ! is_array( $export['entries'] ?? null ) ) {
			return 'damaged export: not version 1 with entries';
		}
		$waiting = array();
		foreach ( $this->waiting() as $entry ) {
			if ( 'add' === ( $entry['doc']['action'] ?? null ) ) {
				$waiting[ Postbag_Suppressions::hash( (string) $entry['doc']['address'] ) . ' ' . $entry['doc']['scope'] ] = true;
			}
		}
		$generated = strtotime( (string) ( $export['generated_at'] ?? '' ) );
		try {
			$counts = $this->table->mirror( $export['entries'], false === $generated ? 0 : $generated, $waiting );
			/**
			 * Fires with each new export of the sender's suppression list, once mirrored
			 * (the email log marks bounced and complained mail from it: Postbag_Log_Recorder).
			 *
			 * @param array[] $entries The export's entries.
			 */
			do_action( 'postbag_suppression_export', $export['entries'] );
			$this->spool->write_file( self::EXPORT_STATE, array( $sha ) );
		} catch ( Postbag_Spool_Exception $e ) {
			return 'mirrored, not remembered: ' . $e->getMessage(); // Mirrored again next hour: harmless.
		}
		return sprintf( 'mirrored: %d added, %d removed, %d skipped', $counts['added'], $counts['removed'], $counts['skipped'] );
	}

	/**
	 * @param array{0: string, 1: array} $due Spool file name and entry.
	 */
	private static function body( array $due ): string {
		return Postbag_Batch::encode( $due[1]['doc'] );
	}
}
