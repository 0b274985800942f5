<?php
/**
 * The request-global buffer of queued mail.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Buffers queued mails for the rest of the request, grouped by the meta they
 * share (site, From, content type, charset, Cc/Bcc/Reply-To, custom headers),
 * and cuts each group into batches by count and size. Adding a mail is an
 * array append: serialization happens once per batch, at drain time.
 */
final class Postbag_Queue {

	/** Bytes of a batch besides its mails and meta (version, ids, site, time). */
	const ENVELOPE_BYTES = 512;

	/** @var array<string, array{site: array, meta: array, mails: array[], bytes: int[], blobs: array<int, array<int, string>>}> */
	private $groups = array();

	/** @var int */
	private $count = 0;

	/** @var int Estimated bytes held, large attachments included. */
	private $held = 0;

	/** @var int Bytes held at which the queue asks to be flushed early. */
	private $full_at;

	/** @var callable|null Called once the queue holds `$full_at` bytes. */
	private $on_full;

	/** @var int */
	private $max_mails;

	/** @var int */
	private $max_bytes;

	/** @var Postbag_Batch_Format_V1 Writes the batch files. */
	private $format;

	/**
	 * @param int $max_mails Most mails in one batch.
	 * @param int $max_bytes Most bytes in one batch file (a single larger mail still gets its own batch).
	 * @param int $full_at   Bytes held at which to flush early: a script queueing
	 *                       100,000 mails or many large attachments would run out
	 *                       of memory before the request ends.
	 */
	public function __construct( int $max_mails, int $max_bytes, int $full_at = 64 * 1024 * 1024 ) {
		$this->max_mails = $max_mails;
		$this->max_bytes = $max_bytes;
		$this->full_at   = $full_at;
		$this->format    = new Postbag_Batch_Format_V1();
	}

	/**
	 * @param callable $on_full Called (with no arguments) after an add() that fills the queue; it should drain it.
	 */
	public function when_full( callable $on_full ): void {
		$this->on_full = $on_full;
	}

	/**
	 * @param array              $site  `url` and `blog_id` of the site that sent the mail.
	 * @param array              $meta  Batch meta (Postbag_Batch_Format_V1::meta()).
	 * @param array              $mail  The mail (Postbag_Batch_Format_V1::mail()).
	 * @param array<int, string> $blobs Bodies of its large attachments by their index among its attachments.
	 * @param int                $bytes Estimated size of the mail in the batch file.
	 */
	public function add( array $site, array $meta, array $mail, array $blobs, int $bytes ): void {
		$group = serialize( array( $site, $meta ) );
		if ( ! isset( $this->groups[ $group ] ) ) {
			$this->groups[ $group ] = array(
				'site'  => $site,
				'meta'  => $meta,
				'mails' => array(),
				'bytes' => array(),
				'blobs' => array(),
			);
		}
		$index                                   = count( $this->groups[ $group ]['mails'] );
		$this->groups[ $group ]['mails'][ $index ] = $mail;
		$this->groups[ $group ]['bytes'][ $index ] = $bytes;
		if ( $blobs ) {
			$this->groups[ $group ]['blobs'][ $index ] = $blobs;
		}
		++$this->count;
		$this->held += $bytes + ( $blobs ? array_sum( array_map( 'strlen', $blobs ) ) : 0 );
		if ( $this->held >= $this->full_at && null !== $this->on_full ) {
			( $this->on_full )();
		}
	}

	/** Mails waiting. */
	public function count(): int {
		return $this->count;
	}

	/**
	 * Empties the queue into batches.
	 *
	 * @param int $now Unix time the batches are made.
	 * @return Postbag_Batch[]
	 */
	public function drain( int $now ): array {
		$groups       = $this->groups;
		$this->groups = array();
		$this->count  = 0;
		$this->held   = 0;
		$created_at   = gmdate( 'Y-m-d\TH:i:s\Z', $now );
		$batches      = array();
		foreach ( $groups as $key => $group ) {
			foreach ( $this->chunks( $group, self::ENVELOPE_BYTES + strlen( $key ) ) as $chunk ) {
				array_push( $batches, ...$this->build( $group, $chunk, $created_at ) );
			}
		}
		return $batches;
	}

	/**
	 * Cuts a group's mails into runs that fit the count and (estimated) size limits.
	 *
	 * @param array $group    One group.
	 * @param int   $overhead Estimated bytes of a batch besides its mails.
	 * @return int[][] Mail indexes per batch.
	 */
	private function chunks( array $group, int $overhead ): array {
		$chunks = array();
		$chunk  = array();
		$bytes  = $overhead;
		foreach ( $group['bytes'] as $index => $mail_bytes ) {
			if ( $chunk && ( count( $chunk ) >= $this->max_mails || $bytes + $mail_bytes > $this->max_bytes ) ) {
				$chunks[] = $chunk;
				$chunk    = array();
				$bytes    = $overhead;
			}
			$chunk[] = $index;
			$bytes  += $mail_bytes;
		}
		if ( $chunk ) {
			$chunks[] = $chunk;
		}
		return $chunks;
	}

	/**
	 * Serializes one chunk. The size estimate ignores JSON escaping, so a
	 * batch that still comes out too large is split in two and rebuilt.
	 *
	 * @param array  $group      The chunk's group.
	 * @param int[]  $indexes    Mail indexes.
	 * @param string $created_at RFC 3339 UTC time.
	 * @return Postbag_Batch[]
	 */
	private function build( array $group, array $indexes, string $created_at ): array {
		$mails = array();
		$blobs = array();
		foreach ( $indexes as $index ) {
			$mails[ $index ] = $group['mails'][ $index ];
			if ( isset( $group['blobs'][ $index ] ) ) {
				$blobs[ $index ] = $group['blobs'][ $index ];
			}
		}
		$batch = $this->format->build( wp_generate_uuid4(), $group['site'], $created_at, $group['meta'], $mails, $blobs );
		if ( strlen( $batch->body ) > $this->max_bytes && count( $indexes ) > 1 ) {
			$half = intdiv( count( $indexes ), 2 );
			return array_merge(
				$this->build( $group, array_slice( $indexes, 0, $half ), $created_at ),
				$this->build( $group, array_slice( $indexes, $half ), $created_at )
			);
		}
		return array( $batch );
	}
}
