<?php
/**
 * Reads wp_mail() attachments at enqueue time.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Reads attachments while the request still has them (they are often
 * temporary files): small ones go inline as base64, larger ones become
 * separate objects that the batch references by `s3_key`.
 */
final class Postbag_Attachment_Reader {

	/** @var int */
	private $inline_max_bytes;

	/**
	 * @param int $inline_max_bytes Largest file sent inline; larger ones are uploaded separately.
	 */
	public function __construct( int $inline_max_bytes ) {
		$this->inline_max_bytes = $inline_max_bytes;
	}

	/**
	 * @param string|string[] $attachments Paths as given to wp_mail(): an array (string keys
	 *                                     name the file, as in WordPress 6.2+) or a newline-separated string.
	 * @return array{entries: array[], blobs: array<int, string>, bytes: int} Batch entries (large
	 *         ones without `s3_key` yet), the large files' contents by entry index, and the
	 *         bytes the inline entries add to the batch.
	 * @throws Postbag_Mail_Exception When a file is missing or unreadable.
	 */
	public function read( $attachments ): array {
		$read = array(
			'entries' => array(),
			'blobs'   => array(),
			'bytes'   => 0,
		);
		if ( empty( $attachments ) ) {
			return $read;
		}
		if ( ! is_array( $attachments ) ) {
			$attachments = explode( "\n", str_replace( "\r\n", "\n", (string) $attachments ) );
		}
		foreach ( $attachments as $name => $path ) {
			$path = trim( (string) $path );
			if ( '' === $path ) {
				continue;
			}
			$filename = is_string( $name ) ? trim( $name ) : wp_basename( $path );
			Postbag_Header_Parser::assert_single_line( 'attachment name', $filename );
			$this->add( $read, $path, $filename );
		}
		return $read;
	}

	/**
	 * @param array  $read     Accumulated result (see read()).
	 * @param string $path     File on the server.
	 * @param string $filename Name shown to the recipient.
	 * @throws Postbag_Mail_Exception When the file is missing or unreadable.
	 */
	private function add( array &$read, string $path, string $filename ): void {
		$body = ( is_file( $path ) && is_readable( $path ) ) ? file_get_contents( $path ) : false;
		if ( false === $body ) {
			throw new Postbag_Mail_Exception( 'postbag_attachment_unreadable', sprintf( 'Could not access file: %s', $path ) );
		}
		$type   = wp_check_filetype( $filename )['type'];
		$inline = strlen( $body ) <= $this->inline_max_bytes;
		if ( $inline ) {
			$read['bytes'] += 4 * intdiv( strlen( $body ) + 2, 3 ); // Its base64.
		} else {
			$read['blobs'][ count( $read['entries'] ) ] = $body;
		}
		$read['entries'][] = Postbag_Batch_Format_V1::attachment(
			'' === $filename ? 'attachment' : mb_substr( $filename, 0, 255 ),
			$type ? $type : 'application/octet-stream',
			$body,
			$inline
		);
	}
}
