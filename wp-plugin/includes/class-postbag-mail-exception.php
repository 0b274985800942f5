<?php
/**
 * A mail that cannot be queued.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * A non-priority mail that cannot be queued (CR/LF in a header, a missing
 * attachment, ...): wp_mail() returns false and `wp_mail_failed` fires.
 */
class Postbag_Mail_Exception extends RuntimeException {

	/** @var string Machine-readable reason, used as the WP_Error code. */
	public $reason;

	/** @var string The field at fault (`subject`, `header X-Campaign`, ...), or '' when none is. */
	public $field;

	/**
	 * @param string $reason  Error code, e.g. `postbag_header_injection`.
	 * @param string $message Human-readable message.
	 * @param string $field   The field at fault, if one is.
	 */
	public function __construct( string $reason, string $message, string $field = '' ) {
		parent::__construct( $message );
		$this->reason = $reason;
		$this->field  = $field;
	}
}
