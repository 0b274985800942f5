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
 * separate objects that the batch references by `s3_key`. What SES would
 * refuse is refused first (Postbag_Mail_Rules): a path with a scheme, a
 * refused file type, more than a message can carry — the size is taken from
 * the file system, so an oversized file is never read.
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
	 * @param int             $budget      Encoded bytes the mail's attachments may take (Postbag_Mail_Rules::attachment_budget()).
	 * @return array{entries: array[], blobs: array<int, string>, bytes: int} Batch entries (large
	 *         ones without `s3_key` yet), the large files' contents by entry index, and the
	 *         bytes the inline entries add to the batch.
	 * @throws Postbag_Mail_Exception When a file is missing, unreadable or refused.
	 */
	public function read( $attachments, int $budget = Postbag_Mail_Rules::MAX_RAW_MESSAGE_BYTES ): array {
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
		$files = array();
		foreach ( $attachments as $name => $path ) {
			if ( ! is_scalar( $path ) ) {
				throw new Postbag_Mail_Exception( 'postbag_attachment_path', 'An attachment is not a file path.', 'attachment path' );
			}
			$path = trim( (string) $path );
			if ( '' === $path ) {
				continue;
			}
			Postbag_Mail_Rules::attachment_path( $path );
			$filename = is_string( $name ) ? trim( $name ) : wp_basename( $path );
			Postbag_Header_Parser::assert_single_line( 'attachment name', $filename );
			Postbag_Mail_Rules::attachment_name( sprintf( 'name of attachment %d', count( $files ) + 1 ), $filename );
			$files[] = array( $path, $filename, self::size( $path ) );
		}
		self::check_sizes( $files, $budget );
		foreach ( $files as $file ) {
			$this->add( $read, $file[0], $file[1] );
		}
		return $read;
	}

	/**
	 * @param string $path File on the server.
	 * @return int Its size.
	 * @throws Postbag_Mail_Exception When it is missing or unreadable.
	 */
	private static function size( string $path ): int {
		$size = ( is_file( $path ) && is_readable( $path ) ) ? filesize( $path ) : false;
		if ( false === $size ) {
			throw new Postbag_Mail_Exception( 'postbag_attachment_unreadable', sprintf( 'Could not access file: %s', $path ), 'attachment path' );
		}
		return $size;
	}

	/**
	 * SES takes at most 10 MB a message, base64 included: one file over what
	 * is left once the body is in, or files that add up to more, are refused.
	 *
	 * @param array<int, array{0: string, 1: string, 2: int}> $files  Path, name and size of each.
	 * @param int                                             $budget Encoded bytes they may take.
	 * @throws Postbag_Mail_Exception When they do not fit.
	 */
	private static function check_sizes( array $files, int $budget ): void {
		$used    = 0;
		$decoded = 0;
		foreach ( $files as $file ) {
			$bytes    = Postbag_Mail_Rules::encoded_bytes( $file[2] ) + Postbag_Mail_Rules::PART_OVERHEAD_BYTES;
			$used    += $bytes;
			$decoded += $file[2];
			if ( $used <= $budget ) {
				continue;
			}
			$limit = size_format( Postbag_Mail_Rules::MAX_RAW_MESSAGE_BYTES );
			if ( $bytes > $budget ) {
				throw new Postbag_Mail_Exception( 'postbag_attachment_too_large', sprintf( 'The attachment %1$s is %2$s: with this mail\'s body it makes a message over the %3$s SES accepts after base64.', $file[0], size_format( $file[2], 1 ), $limit ), 'attachments' );
			}
			throw new Postbag_Mail_Exception( 'postbag_attachment_too_large', sprintf( 'The attachments of this mail add up to %1$s with %2$s: with the body that makes a message over the %3$s SES accepts after base64.', size_format( $decoded, 1 ), $file[0], $limit ), 'attachments' );
		}
	}

	/**
	 * @param array  $read     Accumulated result (see read()).
	 * @param string $path     File on the server.
	 * @param string $filename Name shown to the recipient.
	 * @throws Postbag_Mail_Exception When the file cannot be read.
	 */
	private function add( array &$read, string $path, string $filename ): void {
		$body = file_get_contents( $path );
		if ( false === $body ) {
			throw new Postbag_Mail_Exception( 'postbag_attachment_unreadable', sprintf( 'Could not access file: %s', $path ), 'attachment path' );
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
