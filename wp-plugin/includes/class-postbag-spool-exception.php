<?php
/**
 * The spool directory cannot be written or read.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The spool directory cannot be created, protected, written or read.
 */
class Postbag_Spool_Exception extends RuntimeException {
}
