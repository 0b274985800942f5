<?php
/**
 * S3 PutObject and GetObject requests against what botocore sends for the same object.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/support.php';

use PHPUnit\Framework\TestCase;

/**
 * For each case, boto3's own put_object or get_object (run by
 * botocore-s3-reference.py, caught before it leaves) and
 * Postbag_S3_Client::signed_request() or signed_get() build the request for
 * the same time, credentials, bucket, key and body: the URL, the
 * Authorization header and every signed header must be identical.
 */
final class Postbag_S3PutObjectBotocoreTest extends TestCase {

	/** 2025-11-22T08:26:40Z. */
	const TIME = 1763800000;

	/** @var array<string, array{url: string, headers: array<string, string>}> botocore's requests by case name. */
	private static $reference = array();

	/**
	 * @return array<string, array<string, mixed>> Case name => options for both sides.
	 */
	private static function cases(): array {
		$all_bytes = implode( '', array_map( 'chr', range( 0, 255 ) ) );
		$base      = array(
			'region'       => 'eu-west-1',
			'bucket'       => 'postbag-test-bucket',
			'key'          => 'queue/2026/11/22/0b7c5a2e-batch.json',
			'body'         => '{"version":1,"mails":[]}',
			'content_type' => 'application/json',
			'sse'          => 'AES256',
			'kms_key_id'   => '',
			'access_key'   => 'AKIAIOSFODNN7EXAMPLE',
			'secret'       => 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
			'token'        => null,
			'path_style'   => false,
			'endpoint'     => '',
			'operation'    => 'PutObject',
		);
		$cases     = array(
			'nested key, virtual-hosted'     => array(),
			'nested key, path-style'         => array( 'path_style' => true ),
			'spaces in key'                  => array( 'key' => 'queue/attachments/b 1/m 1/my file (1).pdf' ),
			'unicode key'                    => array( 'key' => 'queue/ünïcødé/日本語 ✉.json' ),
			'plus and other reserved'        => array( 'key' => "queue/a+b=c&d~e!*'();:@,\$[].json" ),
			'empty body, path-style'         => array(
				'body'       => '',
				'path_style' => true,
			),
			'binary body'                    => array(
				'key'          => 'queue/attachments/b1/m1/0',
				'body'         => str_repeat( $all_bytes, 40 ),
				'content_type' => 'application/octet-stream',
			),
			'session token'                  => array(
				'access_key' => 'ASIAIOSFODNN7EXAMPLE',
				'token'      => 'IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+token/with=padding==',
			),
			'session token, path-style'      => array(
				'token'      => 'FwoGZXIvYXdzEXAMPLETOKEN',
				'path_style' => true,
			),
			'aws:kms with key id'            => array(
				'sse'        => 'aws:kms',
				'kms_key_id' => 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
			),
			'us-east-1, virtual-hosted'      => array( 'region' => 'us-east-1' ),
			'custom endpoint on an IP'       => array(
				'endpoint'   => 'http://127.0.0.1:9000',
				'path_style' => true,
				'region'     => 'us-east-1',
			),
			'custom endpoint, virtual-hosted' => array( 'endpoint' => 'http://localhost:4566' ),
			// A job's status, as postbag_job_status() reads it; encryption settings never reach a GET.
			'get, virtual-hosted'            => array(
				'operation' => 'GetObject',
				'key'       => 'jobs/0b7c5a2e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/status.json',
			),
			'get, path-style, session token' => array(
				'operation'  => 'GetObject',
				'key'        => 'jobs/job 1/status.json',
				'path_style' => true,
				'token'      => 'FwoGZXIvYXdzEXAMPLETOKEN',
			),
			'get, aws:kms, custom endpoint'  => array(
				'operation'  => 'GetObject',
				'key'        => 'jobs/ünïcødé+id/status.json',
				'sse'        => 'aws:kms',
				'kms_key_id' => 'alias/postbag',
				'endpoint'   => 'http://127.0.0.1:9000',
				'path_style' => true,
				'region'     => 'us-east-1',
			),
		);
		return array_map(
			static function ( array $overrides ) use ( $base ): array {
				return array_merge( $base, $overrides );
			},
			$cases
		);
	}

	public static function setUpBeforeClass(): void {
		$spec = array(
			'time'  => self::TIME,
			'cases' => array(),
		);
		foreach ( self::cases() as $name => $case ) {
			$case['name']        = $name;
			$case['body_base64'] = base64_encode( $case['body'] );
			unset( $case['body'] );
			$spec['cases'][] = $case;
		}
		self::$reference = Postbag_Test_Python::run(
			array( __DIR__ . '/botocore-s3-reference.py' ),
			array(),
			(string) json_encode( $spec, JSON_THROW_ON_ERROR )
		);
	}

	/**
	 * @return array<string, array{0: string}>
	 */
	public function case_names(): array {
		$names = array_keys( self::cases() );
		return array_combine(
			$names,
			array_map(
				static function ( string $name ): array {
					return array( $name );
				},
				$names
			)
		);
	}

	/**
	 * @dataProvider case_names
	 */
	public function test_request_equals_botocore( string $name ): void {
		$case     = self::cases()[ $name ];
		$expected = self::$reference[ $name ];
		$client   = new Postbag_S3_Client(
			array(
				'bucket'     => $case['bucket'],
				'region'     => $case['region'],
				'endpoint'   => $case['endpoint'],
				'path_style' => $case['path_style'],
				'sse'        => $case['sse'],
				'kms_key_id' => $case['kms_key_id'],
			),
			new Postbag_Credential_Chain( array() ),
			static function (): int {
				return self::TIME;
			}
		);
		$credentials = new Postbag_Credentials( $case['access_key'], $case['secret'], $case['token'] );

		$actual  = 'GetObject' === $case['operation']
			? $client->signed_get( $case['key'], $credentials )
			: $client->signed_request( $case['key'], $case['body'], $case['content_type'], $credentials );
		$ours    = array_change_key_case( $actual['headers'] );
		$theirs  = array_change_key_case( $expected['headers'] );
		$signed  = preg_match( '/SignedHeaders=([^,]+),/', $theirs['authorization'], $match ) ? explode( ';', $match[1] ) : array();
		$theirs += array( 'host' => (string) parse_url( $expected['url'], PHP_URL_HOST ) . ( parse_url( $expected['url'], PHP_URL_PORT ) ? ':' . parse_url( $expected['url'], PHP_URL_PORT ) : '' ) );

		$this->assertSame( $expected['url'], $actual['url'], 'URL' );
		$this->assertContains( 'x-amz-content-sha256', $signed, 'botocore signs the payload hash' );
		foreach ( $signed as $header ) {
			$this->assertArrayHasKey( $header, $ours, "signed header $header" );
			$this->assertSame( $theirs[ $header ], $ours[ $header ], "signed header $header" );
		}
		$this->assertSame( $theirs['authorization'], $ours['authorization'], 'Authorization' );
		if ( 'GetObject' === $case['operation'] ) {
			$this->assertArrayNotHasKey( 'x-amz-server-side-encryption', $ours, 'S3 refuses encryption headers on a GET' );
		}
	}
}
