<?php
/**
 * The outcome of one S3 request.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Whether one PutObject or GetObject worked, and if not, why: the HTTP
 * status, S3's error code and message, or curl's error; a GetObject that
 * worked carries the object's bytes. Never holds credentials.
 */
final class Postbag_S3_Result {

	/** @var bool True when S3 answered 2xx. */
	public $ok;

	/** @var int HTTP status; 0 when no answer came (network error, timeout). */
	public $status;

	/** @var string Why it failed ('' when ok), e.g. "HTTP 403 SignatureDoesNotMatch: ...". */
	public $error;

	/** @var string The object's bytes, for a GetObject that worked ('' otherwise). */
	public $body;

	public function __construct( bool $ok, int $status, string $error = '', string $body = '' ) {
		$this->ok     = $ok;
		$this->status = $status;
		$this->error  = $error;
		$this->body   = $body;
	}
}
