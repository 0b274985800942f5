<?php
/**
 * Writes one gzip-compressed NDJSON part file into the spool.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Lines go through an incremental deflate (ZLIB_ENCODING_GZIP) straight into
 * a guarded temporary file of the spool, hashed as they are written, so a
 * part of 10,000 rows never sits in memory whole, compressed or not. finish()
 * names the file atomically and gives the part's manifest entry: `rows`,
 * `bytes` and `sha256` of the stored (compressed) object.
 */
final class Postbag_Part_Writer {

	/** Text gathered before a deflate call: fewer, larger calls are faster. */
	const BUFFER_BYTES = 65536;

	/** @var Postbag_Spool */
	private $spool;

	/** @var string */
	private $temp;

	/** @var resource */
	private $handle;

	/** @var DeflateContext */
	private $deflate;

	/** @var HashContext */
	private $hash;

	/** @var string */
	private $buffer = '';

	/** @var int */
	private $rows = 0;

	/** @var int Bytes before compression. */
	private $text_bytes = 0;

	/** @var int Compressed bytes written. */
	private $bytes = 0;

	/**
	 * @param Postbag_Spool $spool Where the part is written.
	 * @throws Postbag_Spool_Exception When it cannot be.
	 */
	public function __construct( Postbag_Spool $spool ) {
		$this->spool = $spool;
		list( $this->temp, $this->handle ) = $spool->temp_file();
		$this->deflate = deflate_init( ZLIB_ENCODING_GZIP, array( 'level' => 6 ) );
		$this->hash    = hash_init( 'sha256' );
	}

	/**
	 * @param string $line One JSON object and its `\n`.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	public function add( string $line ): void {
		$this->buffer     .= $line;
		$this->text_bytes += strlen( $line );
		++$this->rows;
		if ( strlen( $this->buffer ) >= self::BUFFER_BYTES ) {
			$this->compress( ZLIB_NO_FLUSH );
		}
	}

	public function rows(): int {
		return $this->rows;
	}

	/** Bytes added before compression (the compressed file is never larger, headers aside). */
	public function text_bytes(): int {
		return $this->text_bytes;
	}

	/**
	 * Ends the gzip stream and gives the file its name.
	 *
	 * @param string $name File name in the spool.
	 * @param string $key  The part's object key.
	 * @return array{key: string, rows: int, bytes: int, sha256: string, uploaded: bool}
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	public function finish( string $name, string $key ): array {
		$this->compress( ZLIB_FINISH );
		if ( ! fclose( $this->handle ) ) {
			throw new Postbag_Spool_Exception( sprintf( 'Cannot write %s in the spool.', $name ) );
		}
		$this->spool->adopt( $this->temp, $name );
		return array(
			'key'      => $key,
			'rows'     => $this->rows,
			'bytes'    => $this->bytes,
			'sha256'   => hash_final( $this->hash ),
			'uploaded' => false,
		);
	}

	/** Drops an unfinished part (its temporary file). */
	public function discard(): void {
		if ( is_resource( $this->handle ) ) {
			fclose( $this->handle );
		}
		if ( is_file( $this->temp ) ) {
			unlink( $this->temp );
		}
	}

	/**
	 * @param int $flush ZLIB_NO_FLUSH or ZLIB_FINISH.
	 * @throws Postbag_Spool_Exception When the spool cannot be written.
	 */
	private function compress( int $flush ): void {
		$out          = deflate_add( $this->deflate, $this->buffer, $flush );
		$this->buffer = '';
		if ( '' === $out ) {
			return;
		}
		if ( strlen( $out ) !== fwrite( $this->handle, $out ) ) {
			$this->discard();
			throw new Postbag_Spool_Exception( 'Cannot write a part file in the spool (disk full?).' );
		}
		hash_update( $this->hash, $out );
		$this->bytes += strlen( $out );
	}
}
