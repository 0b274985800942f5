<?php
/**
 * Runs Postbag_Credential_Chain::default_chain() in a fresh PHP process, so
 * tests can define the POSTBAG_AWS_* constants (which no test process can
 * undefine) and choose the environment.
 *
 *   php credential-chain-probe.php '<json: constant name => value>'
 *   -> {"access_key_id", "secret_access_key", "session_token", "source"} or {"error"}
 *
 * @package Postbag\Tests
 */

define( 'ABSPATH', '/usr/share/wordpress/' );
require __DIR__ . '/support.php';

foreach ( json_decode( $argv[1] ?? '{}', true ) as $postbag_probe_name => $postbag_probe_value ) {
	define( $postbag_probe_name, $postbag_probe_value );
}
try {
	$postbag_probe_credentials = Postbag_Credential_Chain::default_chain()->get();
	echo json_encode(
		array(
			'access_key_id'     => $postbag_probe_credentials->access_key_id(),
			'secret_access_key' => $postbag_probe_credentials->secret_access_key(),
			'session_token'     => $postbag_probe_credentials->session_token(),
			'source'            => $postbag_probe_credentials->source(),
		)
	);
} catch ( Postbag_Credentials_Exception $postbag_probe_error ) {
	echo json_encode( array( 'error' => $postbag_probe_error->getMessage() ) );
}
