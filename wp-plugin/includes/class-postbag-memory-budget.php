<?php
/**
 * How close the request is to PHP's memory_limit, measured.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Compares what the request uses (memory_get_usage()) with memory_limit, so
 * the queue is flushed while the flush itself still fits. An estimate of the
 * bytes each mail holds cannot do it: PHP arrays and strings cost several
 * times their payload (about 2.3 KB for a small mail, against an estimate of
 * 630 bytes), and the rest of the request uses memory too.
 *
 * The limit is read again each time usage crosses the threshold, since it
 * may change during a request (wp_raise_memory_limit() in the admin).
 */
final class Postbag_Memory_Budget {

	/**
	 * Kept free for the flush: one batch serialized and written to the spool
	 * (a copy or two of at most POSTBAG_CHUNK_MAX_BYTES, 5 MB by default), then
	 * a wave of uploads read back from it (Postbag_Spool_Retry::WAVE_BYTES).
	 * A quarter of the limit above that, at most half of it below.
	 */
	const MIN_RESERVE = 24 * 1024 * 1024;

	/** @var callable(): int */
	private $usage;

	/** @var callable(): string */
	private $limit;

	/** @var int Usage below which there is no need to look again; 0 before the first look. */
	private $threshold = 0;

	/**
	 * @param callable|null $usage Bytes in use; default memory_get_usage().
	 * @param callable|null $limit The memory_limit setting; default ini_get( 'memory_limit' ).
	 */
	public function __construct( ?callable $usage = null, ?callable $limit = null ) {
		$this->usage = $usage ?? 'memory_get_usage';
		$this->limit = $limit ?? static function (): string {
			return (string) ini_get( 'memory_limit' );
		};
	}

	/**
	 * Bytes of a memory_limit value as PHP reads it (128M, 1G, 512K, 134217728).
	 *
	 * @param string $value Setting.
	 * @return int Bytes; 0 for no limit (-1, or anything not positive).
	 */
	public static function bytes( string $value ): int {
		return max( 0, (int) wp_convert_hr_to_bytes( $value ) );
	}

	/**
	 * The usage at which a flush is due: the limit less the reserve.
	 *
	 * @return int Bytes; PHP_INT_MAX without a limit.
	 */
	public function threshold(): int {
		$limit = self::bytes( ( $this->limit )() );
		if ( 0 === $limit ) {
			return PHP_INT_MAX;
		}
		return $limit - min( intdiv( $limit, 2 ), max( self::MIN_RESERVE, intdiv( $limit, 4 ) ) );
	}

	/** Whether the request has come close enough to its limit to flush. */
	public function is_low(): bool {
		$used = (int) ( $this->usage )();
		if ( $used < $this->threshold ) {
			return false; // The common case, one function call: run after every queued mail.
		}
		$this->threshold = $this->threshold();
		return $used >= $this->threshold;
	}
}
