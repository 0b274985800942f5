<?php
/**
 * What the sender would refuse, checked when wp_mail() is called.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The refusals of the sender (chalice_app) and of SES that a mail's own
 * fields show: control characters, invalid UTF-8 or RFC 2047 encoded words in
 * anything that becomes a header, headers the sender or SES set themselves,
 * attachment types SES refuses, attachment paths that are not local files,
 * messages over SES's size. A mail refused here makes wp_mail() return false
 * with `wp_mail_failed` while its caller can still react, instead of failing
 * in the Lambda after wp_mail() said true.
 *
 * The lists are shared with the sender through fixtures/sending-rules.json;
 * a unit test holds these constants to it (the plugin ships without fixtures/).
 */
final class Postbag_Mail_Rules {

	/** File types SES refuses as attachments (SES developer guide, "Unsupported attachment types"). */
	const REFUSED_EXTENSIONS = array(
		'ade', 'adp', 'app', 'asp', 'bas', 'bat', 'cer', 'chm', 'cmd', 'com', 'cpl', 'crt', 'csh', 'der', 'exe', 'fxp', 'gadget', 'hlp', 'hta', 'inf', 'ins',
		'isp', 'its', 'js', 'jse', 'ksh', 'lib', 'lnk', 'mad', 'maf', 'mag', 'mam', 'maq', 'mar', 'mas', 'mat', 'mau', 'mav', 'maw', 'mda', 'mdb', 'mde', 'mdt',
		'mdw', 'mdz', 'msc', 'msh', 'msh1', 'msh2', 'mshxml', 'msh1xml', 'msh2xml', 'msi', 'msp', 'mst', 'ops', 'pcd', 'pif', 'plg', 'prf', 'prg', 'reg',
		'scf', 'scr', 'sct', 'shb', 'shs', 'sys', 'ps1', 'ps1xml', 'ps2', 'ps2xml', 'psc1', 'psc2', 'tmp', 'url', 'vb', 'vbe', 'vbs', 'vps', 'vsmacros',
		'vss', 'vst', 'vsw', 'vxd', 'ws', 'wsc', 'wsf', 'wsh', 'xnk',
	);

	/** Custom headers the MIME builder writes from the mail's own fields, lower case. */
	const BUILDER_HEADERS = array(
		'bcc',
		'cc',
		'content-disposition',
		'content-transfer-encoding',
		'content-type',
		'date',
		'from',
		'message-id',
		'mime-version',
		'reply-to',
		'return-path',
		'sender',
		'subject',
		'to',
	);

	/** Headers only the hops a mail passes may write (trace, authentication), lower case. */
	const TRACE_HEADERS = array(
		'arc-authentication-results',
		'arc-message-signature',
		'arc-seal',
		'authentication-results',
		'delivered-to',
		'dkim-signature',
		'domainkey-signature',
		'feedback-id',
		'received',
		'received-spf',
		'x-original-to',
	);

	/** Header families reserved the same way: ARC signatures, resending, SES's and AWS's own. */
	const TRACE_HEADER_PREFIXES = array( 'arc-', 'resent-', 'x-amz-', 'x-ses-' );

	/** SendRawEmail's limit on the message, base64 included. */
	const MAX_RAW_MESSAGE_BYTES = 10485760;

	/** What a mail's headers and MIME structure take besides its body and attachments, generously. */
	const OVERHEAD_BYTES = 32768;

	/** A MIME part's own headers (type, disposition with the file name, encoding). */
	const PART_OVERHEAD_BYTES = 512;

	/**
	 * A value that becomes a header (subject, a mailbox, a file name, a custom
	 * header): valid UTF-8 without any control character (C0 including tab, DEL,
	 * C1, U+2028, U+2029) and without an RFC 2047 encoded word, which a MIME
	 * parser would decode into whatever it hides (a line break, a Bcc:).
	 *
	 * @param string $field Field name for the message, e.g. `subject`.
	 * @param string $value The value, UTF-8.
	 * @throws Postbag_Mail_Exception When the sender would refuse it.
	 */
	public static function header_value( string $field, string $value ): void {
		if ( ! preg_match( '/[^\x20-\x7E]/', $value ) ) {
			// Most values: printable ASCII, where only an encoded word can hide anything.
			if ( false !== strpos( $value, '=?' ) ) {
				self::encoded_word( $field, $value );
			}
			return;
		}
		if ( ! preg_match( '//u', $value ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_utf8', sprintf( 'The %s is not valid UTF-8 (in the charset it declares), refused: the sender would refuse it.', $field ), $field );
		}
		if ( false !== strpbrk( $value, "\r\n" ) ) {
			throw new Postbag_Mail_Exception( 'postbag_header_injection', sprintf( 'The %s holds a line break (CR or LF), refused as a header injection.', $field ), $field );
		}
		if ( preg_match( '/[\x00-\x1F\x7F\x{80}-\x{9F}\x{2028}\x{2029}]/u', $value, $match ) ) {
			throw new Postbag_Mail_Exception( 'postbag_control_character', sprintf( 'The %s holds the control character U+%04X, refused: the sender would refuse it.', $field, self::code_point( $match[0] ) ), $field );
		}
		self::encoded_word( $field, $value );
	}

	/**
	 * @param string $field Field name for the message.
	 * @param string $value The value.
	 * @throws Postbag_Mail_Exception When it holds an RFC 2047 encoded word.
	 */
	private static function encoded_word( string $field, string $value ): void {
		if ( preg_match( '/=\?[^?]*\?[bq]\?[^?]*\?=/i', $value ) ) {
			throw new Postbag_Mail_Exception( 'postbag_header_injection', sprintf( 'The %s holds an RFC 2047 encoded word (=?charset?B|Q?...?=), refused as a header injection: pass the text itself, the sender encodes it.', $field ), $field );
		}
	}

	/**
	 * @param string $name A custom header's name.
	 * @throws Postbag_Mail_Exception For a reserved header.
	 */
	public static function header_name( string $name ): void {
		$lower = strtolower( $name );
		if ( in_array( $lower, self::BUILDER_HEADERS, true ) ) {
			throw new Postbag_Mail_Exception( 'postbag_reserved_header', sprintf( 'The header %s is set by the sender from the mail\'s own fields, refused.', $name ), "header $name" );
		}
		$trace = in_array( $lower, self::TRACE_HEADERS, true );
		foreach ( self::TRACE_HEADER_PREFIXES as $prefix ) {
			$trace = $trace || 0 === strpos( $lower, $prefix );
		}
		if ( $trace ) {
			throw new Postbag_Mail_Exception( 'postbag_reserved_header', sprintf( 'The header %s is a trace or authentication header, written only by the hops a mail passes, refused.', $name ), "header $name" );
		}
	}

	/**
	 * Attachments are local files. Like core (PHPMailer's isPermittedPath()),
	 * nothing with a scheme: file://, php://, phar://, data:, http:// or any
	 * other stream wrapper, which could read what no caller meant to attach.
	 *
	 * @param string $path Attachment path as given.
	 * @throws Postbag_Mail_Exception When it is not a plain local path.
	 */
	public static function attachment_path( string $path ): void {
		if ( false !== strpos( $path, "\0" ) ) {
			throw new Postbag_Mail_Exception( 'postbag_attachment_path', 'An attachment path holds a NUL byte, refused.', 'attachment path' );
		}
		// Two letters at least: C:\ is a Windows drive, not a wrapper.
		if ( preg_match( '#^([a-z][a-z\d+.-]+):#i', $path, $match ) ) {
			throw new Postbag_Mail_Exception( 'postbag_attachment_path', sprintf( 'The attachment %s uses the %s: stream wrapper, refused: attachments must be local files.', $path, $match[1] ), 'attachment path' );
		}
	}

	/**
	 * A file name SES sends: a valid header value whose extension, once the
	 * trailing dots, blanks and invisible characters that Windows or a mail
	 * client would drop are gone, is not one SES refuses.
	 *
	 * @param string $field    Field name for the message.
	 * @param string $filename Name shown to the recipient.
	 * @throws Postbag_Mail_Exception When SES or the sender would refuse it.
	 */
	public static function attachment_name( string $field, string $filename ): void {
		self::header_value( $field, $filename );
		$normalised = strtolower( (string) preg_replace( '/[\s.\x{A0}\x{1680}\x{180E}\x{2000}-\x{200F}\x{202F}\x{205F}\x{2060}\x{3000}\x{FEFF}]+$/u', '', $filename ) );
		$dot        = strrpos( $normalised, '.' );
		$extension  = false === $dot ? '' : substr( $normalised, $dot + 1 );
		if ( in_array( $extension, self::REFUSED_EXTENSIONS, true ) ) {
			throw new Postbag_Mail_Exception( 'postbag_attachment_type', sprintf( 'SES refuses .%s attachments: %s.', $extension, $filename ), $field );
		}
	}

	/**
	 * Bytes `$bytes` take in the message: base64, 76 characters a line, CRLF.
	 *
	 * @param int $bytes Decoded size.
	 */
	public static function encoded_bytes( int $bytes ): int {
		$base64 = 4 * intdiv( $bytes + 2, 3 );
		return $base64 + 2 * intdiv( $base64 + 75, 76 );
	}

	/**
	 * What a mail's attachments may still take once its body is in.
	 *
	 * @param int  $body_bytes Body size.
	 * @param bool $html       Whether the body is HTML (the sender adds a text part made from it).
	 * @return int Encoded bytes left for attachments; negative when the body alone is too large.
	 */
	public static function attachment_budget( int $body_bytes, bool $html ): int {
		return self::MAX_RAW_MESSAGE_BYTES - self::OVERHEAD_BYTES - ( $html ? 2 : 1 ) * self::encoded_bytes( $body_bytes );
	}

	/**
	 * @param string $char One UTF-8 character.
	 */
	private static function code_point( string $char ): int {
		$bytes = array_values( unpack( 'C*', $char ) );
		switch ( count( $bytes ) ) {
			case 1:
				return $bytes[0];
			case 2:
				return ( ( $bytes[0] & 0x1F ) << 6 ) | ( $bytes[1] & 0x3F );
			default:
				return ( ( $bytes[0] & 0x0F ) << 12 ) | ( ( $bytes[1] & 0x3F ) << 6 ) | ( $bytes[2] & 0x3F );
		}
	}
}
