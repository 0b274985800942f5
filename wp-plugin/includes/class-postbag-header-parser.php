<?php
/**
 * Parses wp_mail() headers and addresses the way core does.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Mirrors the header parsing of core's wp_mail() (wp-includes/pluggable.php):
 * string or array headers; From, Cc, Bcc, Reply-To and Content-Type (with
 * charset or boundary) are picked out, everything else is a custom header.
 * Unlike core it refuses CR or LF inside a value instead of letting PHPMailer
 * strip them, so a header injection attempt fails loudly.
 */
final class Postbag_Header_Parser {

	/** Headers core leaves to PHPMailer and never passes on as custom headers. */
	const IGNORED = array( 'MIME-Version', 'X-Mailer' );

	/**
	 * @param string|string[] $headers As given to wp_mail().
	 * @return array{from_name: ?string, from_email: ?string, content_type: ?string, charset: ?string, boundary: ?string, cc: string[], bcc: string[], reply_to: string[], headers: array<string, string>}
	 * @throws Postbag_Mail_Exception On CR/LF inside a header or an invalid header name.
	 */
	public static function parse( $headers ): array {
		$parsed = array(
			'from_name'    => null,
			'from_email'   => null,
			'content_type' => null,
			'charset'      => null,
			'boundary'     => null,
			'cc'           => array(),
			'bcc'          => array(),
			'reply_to'     => array(),
			'headers'      => array(),
		);
		if ( empty( $headers ) ) {
			return $parsed;
		}
		if ( is_array( $headers ) ) {
			$lines = $headers;
		} else {
			// In a string, line breaks separate headers; inside an array element they are an injection.
			$lines = explode( "\n", str_replace( "\r\n", "\n", (string) $headers ) );
		}
		foreach ( $lines as $line ) {
			self::parse_line( (string) $line, $parsed );
		}
		return $parsed;
	}

	/**
	 * @param string $line   One header line.
	 * @param array  $parsed Accumulated result (see parse()).
	 * @throws Postbag_Mail_Exception On CR/LF or an invalid header name.
	 */
	private static function parse_line( string $line, array &$parsed ): void {
		self::assert_single_line( 'header', $line );
		if ( false === strpos( $line, ':' ) ) {
			// Core's legacy form: a bare `boundary=...` line after the Content-Type.
			if ( false !== stripos( $line, 'boundary=' ) ) {
				$parts              = preg_split( '/boundary=/i', trim( $line ) );
				$parsed['boundary'] = trim( str_replace( array( "'", '"' ), '', $parts[1] ) );
			}
			return;
		}
		list( $name, $content ) = explode( ':', trim( $line ), 2 );
		$name                   = trim( $name );
		$content                = trim( $content );

		switch ( strtolower( $name ) ) {
			case 'from':
				self::parse_from( $content, $parsed );
				break;
			case 'content-type':
				self::parse_content_type( $content, $parsed );
				break;
			case 'cc':
			case 'bcc':
			case 'reply-to':
				$field              = str_replace( '-', '_', strtolower( $name ) );
				$parsed[ $field ] = array_merge( $parsed[ $field ], self::split_addresses( $content ) );
				break;
			default:
				if ( ! preg_match( '/^[!-9;-~]{1,76}$/', $name ) ) {
					throw new Postbag_Mail_Exception( 'postbag_invalid_header', sprintf( 'Invalid header name "%s".', $name ) );
				}
				if ( ! in_array( $name, self::IGNORED, true ) ) {
					// Keyed by name like core: a repeated header keeps its last value.
					$parsed['headers'][ $name ] = $content;
				}
				break;
		}
	}

	/**
	 * `Name <address>` or a bare address; quotes around the name are dropped, as core does.
	 *
	 * @param string $content Header value.
	 * @param array  $parsed  Accumulated result.
	 */
	private static function parse_from( string $content, array &$parsed ): void {
		$bracket = strpos( $content, '<' );
		if ( false === $bracket ) {
			if ( '' !== $content ) {
				$parsed['from_email'] = $content;
			}
			return;
		}
		if ( $bracket > 0 ) {
			$parsed['from_name'] = trim( str_replace( '"', '', substr( $content, 0, $bracket ) ) );
		}
		$parsed['from_email'] = trim( str_replace( '>', '', substr( $content, $bracket + 1 ) ) );
	}

	/**
	 * `type; charset=...` or `type; boundary=...` (the parameter names case-insensitive).
	 *
	 * @param string $content Header value.
	 * @param array  $parsed  Accumulated result.
	 */
	private static function parse_content_type( string $content, array &$parsed ): void {
		if ( false === strpos( $content, ';' ) ) {
			if ( '' !== $content ) {
				$parsed['content_type'] = $content;
			}
			return;
		}
		$parts                  = explode( ';', $content );
		$parsed['content_type'] = trim( $parts[0] );
		foreach ( array_slice( $parts, 1 ) as $parameter ) {
			if ( preg_match( '/^\s*(charset|boundary)\s*=\s*"?([^"]*)"?\s*$/i', $parameter, $match ) ) {
				$parsed[ strtolower( $match[1] ) ] = trim( $match[2] );
			}
		}
	}

	/**
	 * A comma-separated list (or an array) of mailboxes, trimmed, empty items dropped.
	 * Like core, a string is split on every comma.
	 *
	 * @param string|string[] $addresses As given to wp_mail() or in a header.
	 * @return string[]
	 * @throws Postbag_Mail_Exception On CR/LF inside an address.
	 */
	public static function split_addresses( $addresses ): array {
		$list = is_array( $addresses ) ? $addresses : explode( ',', (string) $addresses );
		$out  = array();
		foreach ( $list as $address ) {
			$address = trim( (string) $address );
			if ( '' !== $address ) {
				self::assert_single_line( 'address', $address );
				$out[] = $address;
			}
		}
		return $out;
	}

	/**
	 * Splits `Name <user@example.org>` the way core does before PHPMailer sees it.
	 *
	 * @param string $mailbox Mailbox as written.
	 * @return array{0: string, 1: string} Display name ('' when none) and address.
	 */
	public static function split_mailbox( string $mailbox ): array {
		if ( preg_match( '/(.*)<(.+)>/', $mailbox, $match ) ) {
			return array( trim( trim( $match[1] ), '"' ), trim( $match[2] ) );
		}
		return array( '', trim( $mailbox ) );
	}

	/**
	 * RFC 5322 mailbox text; a name with special characters is quoted. A
	 * non-ASCII name stays UTF-8: the sender encodes it.
	 *
	 * @param string $name  Display name, may be ''.
	 * @param string $email Address.
	 */
	public static function format_mailbox( string $name, string $email ): string {
		if ( '' === $name ) {
			return $email;
		}
		if ( false !== strpbrk( $name, '()<>[]:;@\\,."' ) ) {
			$name = '"' . addcslashes( $name, '"\\' ) . '"';
		}
		return $name . ' <' . $email . '>';
	}

	/**
	 * @param string $field Field name for the message.
	 * @param string $value Value to check.
	 * @throws Postbag_Mail_Exception When the value holds CR or LF.
	 */
	public static function assert_single_line( string $field, string $value ): void {
		if ( false !== strpbrk( $value, "\r\n" ) ) {
			throw new Postbag_Mail_Exception( 'postbag_header_injection', sprintf( 'The %s holds a line break (CR or LF), refused as a header injection.', $field ), $field );
		}
	}
}
