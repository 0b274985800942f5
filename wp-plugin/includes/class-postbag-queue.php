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
 * share (site, From, content type, charset, Cc/Bcc/Reply-To, custom headers)
 * and by their `send_at` (a batch is held and sent as one),
 * and cuts each group into batches by count and size. Adding a mail is an
 * array append: serialization happens once per batch, at drain time, one
 * batch at a time (batches()), so draining never holds much more than the
 * queue did. The queue asks to be flushed early when the request nears its
 * memory_limit (Postbag_Memory_Budget) or holds `$full_at` bytes.
 */
final class Postbag_Queue {

	/** Bytes of a batch besides its mails and meta (version, ids, site, time). */
	const ENVELOPE_BYTES = 512;

	/**
	 * Bytes held below which a low memory budget does not flush: flushing a
	 * few mails frees next to nothing when the rest of the request is what
	 * fills the memory, and would cut batches of one mail. A full batch's worth
	 * of mails flushes too.
	 */
	const MIN_EARLY_FLUSH_BYTES = 1048576;

	/** @var array<string, array{site: array, meta: array, send_at: ?string, mails: array[], bytes: int[], blobs: array<int, array<int, string>>}> */
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

	/** @var Postbag_Memory_Budget|null */
	private $memory;

	/**
	 * @param int                        $max_mails Most mails in one batch.
	 * @param int                        $max_bytes Most bytes in one batch file (a single larger mail still gets its own batch).
	 * @param int                        $full_at   Estimated bytes held at which to flush early, whatever
	 *                                              the memory: the bound when memory_limit is -1.
	 * @param Postbag_Memory_Budget|null $memory    Asks for a flush when the request nears its memory_limit;
	 *                                              null: only `$full_at` does.
	 */
	public function __construct( int $max_mails, int $max_bytes, int $full_at = 64 * 1024 * 1024, ?Postbag_Memory_Budget $memory = null ) {
		$this->max_mails = $max_mails;
		$this->max_bytes = $max_bytes;
		$this->full_at   = $full_at;
		$this->memory    = $memory;
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
	 * @param string|null        $send_at When the sender sends it (UTC RFC 3339), null for now.
	 */
	public function add( array $site, array $meta, array $mail, array $blobs, int $bytes, ?string $send_at = null ): void {
		$group = serialize( array( $site, $meta, $send_at ) );
		if ( ! isset( $this->groups[ $group ] ) ) {
			$this->groups[ $group ] = array(
				'site'    => $site,
				'meta'    => $meta,
				'send_at' => $send_at,
				'mails'   => array(),
				'bytes'   => array(),
				'blobs'   => array(),
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
		if ( null !== $this->on_full && $this->is_full() ) {
			( $this->on_full )();
		}
	}

	/** Whether to flush now, before the end of the request. */
	private function is_full(): bool {
		if ( $this->held >= $this->full_at ) {
			return true;
		}
		$worth_it = $this->count >= $this->max_mails || $this->held >= self::MIN_EARLY_FLUSH_BYTES;
		return $worth_it && null !== $this->memory && $this->memory->is_low();
	}

	/** Mails waiting. */
	public function count(): int {
		return $this->count;
	}

	/**
	 * Empties the queue into batches, all at once.
	 *
	 * @param int $now Unix time the batches are made.
	 * @return Postbag_Batch[]
	 */
	public function drain( int $now ): array {
		return iterator_to_array( $this->batches( $now ), false );
	}

	/**
	 * Empties the queue into batches, one at a time: each is serialized when
	 * asked for, and its mails are let go once it is, so the memory a drain
	 * needs is one batch, whatever the queue held. The queue is empty from
	 * the first batch on (mail queued meanwhile waits for the next drain);
	 * stop early and the mails not yet yielded are lost: consume them all.
	 *
	 * @param int $now Unix time the batches are made.
	 * @return Generator<int, Postbag_Batch>
	 */
	public function batches( int $now ): Generator {
		$groups       = $this->groups;
		$this->groups = array();
		$this->count  = 0;
		$this->held   = 0;
		$created_at   = gmdate( 'Y-m-d\TH:i:s\Z', $now );
		foreach ( array_keys( $groups ) as $key ) {
			$group = $groups[ $key ];
			unset( $groups[ $key ] ); // $group holds the only reference: what it lets go is freed.
			foreach ( $this->chunks( $group, self::ENVELOPE_BYTES + strlen( $key ) ) as $chunk ) {
				yield from $this->build( $group, $chunk, $created_at );
				foreach ( $chunk as $index ) {
					unset( $group['mails'][ $index ], $group['blobs'][ $index ] );
				}
			}
		}
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
		$batch = $this->format->build( wp_generate_uuid4(), $group['site'], $created_at, $group['meta'], $mails, $blobs, $group['send_at'] );
		if ( strlen( $batch->body ) > $this->max_bytes && count( $indexes ) > 1 ) {
			$half = intdiv( count( $indexes ), 2 );
			return array_merge(
				$this->build( $group, array_slice( $indexes, 0, $half ), $created_at ),
				$this->build( $group, array_slice( $indexes, $half ), $created_at )
			);
		}
		if ( null !== $group['send_at'] ) {
			/**
			 * Fires when queued mails with a send_at become a batch, which the sender holds until then.
			 *
			 * @param string   $batch_id Batch id.
			 * @param string[] $mail_ids Ids of its mails.
			 * @param string   $send_at  UTC RFC 3339.
			 */
			do_action( 'postbag_batch_scheduled', $batch->id, $batch->mail_ids, $group['send_at'] );
		}
		return array( $batch );
	}
}
