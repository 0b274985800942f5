<?php
/**
 * Router for `php -S 127.0.0.1:<port>`: a fake of the ECS container
 * credentials endpoint, the EC2 instance metadata service (IMDSv2) and a
 * slow S3, for the credential chain and S3 client tests.
 *
 * POSTBAG_FAKE_STATE names a JSON file the test writes: credentials to hand
 * out ("ecs", "imds"), the role name, the expected container token, how long
 * S3 takes ("s3_delay_ms"). Every request is appended to POSTBAG_FAKE_LOG as
 * one JSON line (method, path, headers, start and end times).
 *
 * @package Postbag\Tests
 */

const POSTBAG_FAKE_IMDS_TOKEN = 'fake-imds-session-token';

$postbag_fake_start   = microtime( true );
$postbag_fake_state   = json_decode( (string) file_get_contents( (string) getenv( 'POSTBAG_FAKE_STATE' ) ), true );
$postbag_fake_headers = array_change_key_case( getallheaders() );
$postbag_fake_method  = $_SERVER['REQUEST_METHOD'];
$postbag_fake_path    = rawurldecode( (string) parse_url( $_SERVER['REQUEST_URI'], PHP_URL_PATH ) );
$postbag_fake_role    = '/latest/meta-data/iam/security-credentials/';

/**
 * Answers and logs the request.
 *
 * @param int    $status HTTP status.
 * @param string $body   Response body.
 */
function postbag_fake_answer( int $status, string $body ): void {
	global $postbag_fake_start, $postbag_fake_headers, $postbag_fake_method, $postbag_fake_path;
	$entry = array(
		'method'  => $postbag_fake_method,
		'path'    => $postbag_fake_path,
		'headers' => $postbag_fake_headers,
		'start'   => $postbag_fake_start,
		'end'     => microtime( true ),
	);
	file_put_contents( (string) getenv( 'POSTBAG_FAKE_LOG' ), json_encode( $entry ) . "\n", FILE_APPEND | LOCK_EX );
	http_response_code( $status );
	echo $body;
}

if ( 'GET' === $postbag_fake_method && '/ecs/credentials' === $postbag_fake_path ) {
	$expected = $postbag_fake_state['ecs_token'] ?? '';
	if ( '' !== $expected && ( $postbag_fake_headers['authorization'] ?? '' ) !== $expected ) {
		postbag_fake_answer( 401, '{"code":"Unauthorized"}' );
	} else {
		postbag_fake_answer( 200, json_encode( $postbag_fake_state['ecs'] ) );
	}
} elseif ( 'PUT' === $postbag_fake_method && '/latest/api/token' === $postbag_fake_path ) {
	// IMDSv2 refuses a token request without a TTL.
	$ttl = $postbag_fake_headers['x-aws-ec2-metadata-token-ttl-seconds'] ?? '';
	postbag_fake_answer( ctype_digit( $ttl ) ? 200 : 400, ctype_digit( $ttl ) ? POSTBAG_FAKE_IMDS_TOKEN : '' );
} elseif ( 'GET' === $postbag_fake_method && 0 === strpos( $postbag_fake_path, $postbag_fake_role ) ) {
	if ( ( $postbag_fake_headers['x-aws-ec2-metadata-token'] ?? '' ) !== POSTBAG_FAKE_IMDS_TOKEN ) {
		postbag_fake_answer( 401, '' );
	} elseif ( $postbag_fake_role === $postbag_fake_path ) {
		postbag_fake_answer( 200, $postbag_fake_state['role'] . "\n" );
	} elseif ( $postbag_fake_role . $postbag_fake_state['role'] === $postbag_fake_path ) {
		postbag_fake_answer( 200, json_encode( $postbag_fake_state['imds'] ) );
	} else {
		postbag_fake_answer( 404, '' );
	}
} elseif ( 'PUT' === $postbag_fake_method && 0 === strpos( $postbag_fake_path, '/fake-s3/' ) ) {
	file_get_contents( 'php://input' );
	usleep( 1000 * (int) ( $postbag_fake_state['s3_delay_ms'] ?? 0 ) );
	postbag_fake_answer( 200, '' );
} else {
	postbag_fake_answer( 404, '' );
}
