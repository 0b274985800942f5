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
 * "Suppression"), recorded through Postbag_Schedule_Controls (the one helper
 * for small documents on their way to the bucket): written to the spool
 * before the visitor gets an answer and put after the response; a failed
 * upload backs off like a batch and is retried by the spool's cron events,
 * so a change made while S3 is down reaches the sender once it is back.
 * Uploading a document twice is harmless: the sender applies it by its
 * content, and its name is a UUID. Its `at` has milliseconds, and two
 * changes of one process never share one: the sender applies a change only
 * when it is newer than the last one it applied for that address and scope.
 *
 * In: the spool's hourly event reads `suppressions/export.json` and mirrors
 * it into the local table (Postbag_Suppressions::mirror()). The export's
 * SHA-256 is kept in the spool so an unchanged export costs one GET and no
 * database work (the S3 client has no conditional GET).
 */
final class Postbag_Suppression_Inbox {

	const PREFIX = 'suppressions/inbox/';

	const EXPORT_KEY = 'suppressions/export.json';

	/** The spool file remembering the last export mirrored. */
	const EXPORT_STATE = 'suppressions-export.sha.php';

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Schedule_Controls Keeps and puts the documents. */
	private $controls;

	/** @var Postbag_Suppressions */
	private $table;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Spool             $spool    Remembers the last export.
	 * @param Postbag_Batch_Uploader    $uploader Gets the export.
	 * @param Postbag_Schedule_Controls $controls Keeps and puts the documents.
	 * @param Postbag_Suppressions      $table    The local list.
	 * @param callable(): int           $clock    Current Unix time.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Batch_Uploader $uploader, Postbag_Schedule_Controls $controls, Postbag_Suppressions $table, callable $clock ) {
		$this->spool    = $spool;
		$this->uploader = $uploader;
		$this->controls = $controls;
		$this->table    = $table;
		$this->clock    = $clock;
	}

	public function init(): void {
		add_action( Postbag_Spool_Retry::HOURLY_HOOK, array( $this, 'sync' ) );
	}

	public function remove(): void {
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
		$id = wp_generate_uuid4();
		$this->controls->request(
			self::PREFIX . $id . '.json',
			array(
				'version' => 1,
				'action'  => $action,
				'scope'   => $scope,
				'address' => Postbag_Suppressions::normalise( $address ),
				'reason'  => $reason,
				'source'  => 'site',
				'site'    => home_url(),
				'at'      => Postbag_Send_Time::stamp( $now ),
			),
			null,
			true
		);
		return $id;
	}

	/**
	 * Puts the documents that are due (all with `$force`); those S3 refuses back off.
	 *
	 * @param bool $force Ignore the backoff.
	 * @return int Documents still waiting.
	 */
	public function send( $force = false ): int {
		return $this->controls->run( true === $force, self::PREFIX );
	}

	/**
	 * Documents waiting in the spool (Site Health, the mirror, tests).
	 *
	 * @return array<string, array> Document id => `doc`, `attempts`, `next_attempt_at`, `last_error`.
	 */
	public function waiting(): array {
		$waiting = array();
		foreach ( $this->controls->documents( self::PREFIX ) as $key => $entry ) {
			$waiting[ substr( $key, strlen( self::PREFIX ), -strlen( '.json' ) ) ] = $entry;
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
}
