<?php
/**
 * No usable AWS credentials.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Raised when no credential provider yields credentials, or one fails.
 * Messages name the providers and what went wrong, never a secret.
 */
class Postbag_Credentials_Exception extends RuntimeException {
}
