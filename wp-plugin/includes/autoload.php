<?php
/**
 * The plugin's class autoloader, shared by postbag.php and uninstall.php.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Loads `Postbag_Foo_Bar` from includes/class-postbag-foo-bar.php, or from the
 * subfolder named for it below (no composer at run time).
 *
 * @param string $class_name Class being loaded.
 */
function postbag_autoload( $class_name ) {
	// The classes that live in a subfolder, one by one: no folder is ever searched.
	static $folders = array(
		// The AWS layer: SigV4 signing, the S3 client, where credentials come from.
		'Postbag_SigV4_Signer'          => 'aws/',
		'Postbag_S3_Client'             => 'aws/',
		'Postbag_S3_Result'             => 'aws/',
		'Postbag_Credential_Chain'      => 'aws/',
		'Postbag_Credentials'           => 'aws/',
		'Postbag_Credentials_Exception' => 'aws/',
		// Batch formats: what they share, then one class per version.
		'Postbag_Batch_Format'          => 'format/',
		'Postbag_Batch_Format_V1'       => 'format/',
		'Postbag_Job_Format_V2'         => 'format/',
	);
	if ( 0 !== strpos( $class_name, 'Postbag_' ) ) {
		return;
	}
	$file = __DIR__ . '/' . ( $folders[ $class_name ] ?? '' ) . 'class-' . strtolower( str_replace( '_', '-', $class_name ) ) . '.php';
	if ( is_file( $file ) ) {
		require $file;
	}
}
spl_autoload_register( 'postbag_autoload' );
