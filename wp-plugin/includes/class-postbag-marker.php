<?php
/**
 * The marks that make a mail non-priority.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Finds and removes the marker address (among To, Cc and Bcc) and the subject
 * prefix that flag a mail as non-priority.
 */
final class Postbag_Marker {

	/** @var string */
	private $address;

	/** @var string */
	private $prefix;

	/**
	 * @param string $address Marker address, compared case-insensitively.
	 * @param string $prefix  Subject prefix, compared case-insensitively.
	 */
	public function __construct( string $address, string $prefix ) {
		$this->address = strtolower( trim( $address ) );
		$this->prefix  = $prefix;
	}

	/**
	 * A cheap first look, run on every wp_mail() call: could this mail carry a
	 * mark? Urgent mail never pays for parsing.
	 *
	 * @param array $atts wp_mail() arguments as passed to `pre_wp_mail`.
	 */
	public function may_be_marked( array $atts ): bool {
		if ( $this->has_prefix( (string) ( $atts['subject'] ?? '' ) ) ) {
			return true;
		}
		if ( '' === $this->address ) {
			return false;
		}
		foreach ( array( 'to', 'headers' ) as $field ) {
			$value = $atts[ $field ] ?? '';
			if ( false !== stripos( is_array( $value ) ? implode( "\n", $value ) : (string) $value, $this->address ) ) {
				return true;
			}
		}
		return false;
	}

	/**
	 * @param string $subject Subject as given.
	 */
	public function has_prefix( string $subject ): bool {
		return '' !== $this->prefix && 0 === strncasecmp( ltrim( $subject ), $this->prefix, strlen( $this->prefix ) );
	}

	/**
	 * @param string $subject Subject as given.
	 * @return string The subject without the prefix and the blanks after it.
	 */
	public function strip_prefix( string $subject ): string {
		return $this->has_prefix( $subject ) ? ltrim( substr( ltrim( $subject ), strlen( $this->prefix ) ) ) : $subject;
	}

	/**
	 * Removes the marker address from a list of mailboxes.
	 *
	 * @param string[] $mailboxes Mailboxes, e.g. `Name <user@example.org>`.
	 * @param bool     $found     Set to true when the marker was among them.
	 * @return string[] The other mailboxes, in order.
	 */
	public function strip_address( array $mailboxes, bool &$found ): array {
		if ( '' === $this->address ) {
			return $mailboxes;
		}
		$kept = array();
		foreach ( $mailboxes as $mailbox ) {
			if ( strtolower( Postbag_Header_Parser::split_mailbox( $mailbox )[1] ) === $this->address ) {
				$found = true;
			} else {
				$kept[] = $mailbox;
			}
		}
		return $kept;
	}
}
