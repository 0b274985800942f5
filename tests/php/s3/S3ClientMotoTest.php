<?php
/**
 * The S3 client against a real server: moto's, with signature checking on.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/support.php';

use PHPUnit\Framework\TestCase;

/**
 * Uploads batch files in parallel to moto's server on 127.0.0.1 (which checks
 * every SigV4 signature against an IAM key it issued), reads them back with
 * boto3 and compares the bytes; reads objects back with get_object(); a
 * wrong secret, a missing object and an unreachable endpoint give failed
 * results, not exceptions.
 */
final class Postbag_S3ClientMotoTest extends TestCase {

	const BUCKET = 'postbag-php-test';
	const REGION = 'us-east-1';

	/** @var Postbag_Test_Local_Aws|null */
	private static $server;

	/** @var array{access_key_id: string, secret_access_key: string} */
	private static $key;

	public static function setUpBeforeClass(): void {
		self::$server = new Postbag_Test_Local_Aws( true );
		self::$key    = self::iam_user();
	}

	public static function tearDownAfterClass(): void {
		if ( null !== self::$server ) {
			self::$server->stop();
			self::$server = null;
		}
	}

	public function test_batches_uploaded_in_parallel_read_back_byte_for_byte(): void {
		$bodies = array();
		for ( $i = 1; $i <= 12; $i++ ) {
			$bodies[ sprintf( 'queue/%08d-batch.json', $i ) ] = json_encode(
				array(
					'version' => 1,
					'mails'   => array_fill( 0, $i, array( 'subject' => "Mail $i ✉", 'body' => str_repeat( 'x', 1000 * $i ) ) ),
				)
			);
		}
		$bodies['queue/nested/ünïcødé name+plus.json'] = '{"version":1}';
		$bodies['queue/empty.json']                    = '';
		$binary                                        = random_bytes( 70000 );

		$client  = $this->client( self::$key['secret_access_key'], array( 'concurrency' => 4 ) );
		$results = $client->put_objects( $bodies );
		$single  = $client->put_object( 'queue/attachments/b1/m1/0', $binary, 'application/octet-stream' );

		$this->assertSame( array_keys( $bodies ), array_keys( $results ), 'one result per key, in order' );
		foreach ( $results as $key => $result ) {
			$this->assertTrue( $result->ok, "$key: {$result->error}" );
			$this->assertSame( 200, $result->status );
			$this->assertSame( '', $result->error );
		}
		$this->assertTrue( $single->ok, $single->error );

		$stored = self::stored();
		foreach ( $bodies as $key => $body ) {
			$this->assertArrayHasKey( $key, $stored );
			$this->assertSame( $body, base64_decode( $stored[ $key ]['body_base64'] ), "bytes of $key" );
			$this->assertSame( 'application/json', $stored[ $key ]['content_type'] );
			$this->assertSame( 'AES256', $stored[ $key ]['sse'] );
		}
		$attachment = $stored['queue/attachments/b1/m1/0'];
		$this->assertSame( $binary, base64_decode( $attachment['body_base64'] ) );
		$this->assertSame( 'application/octet-stream', $attachment['content_type'] );
	}

	public function test_get_object_reads_back_what_was_put_and_names_what_is_missing(): void {
		$client = $this->client( self::$key['secret_access_key'], array( 'sse' => 'AES256' ) );
		$status = '{"job_id":"j1","state":"sending","sent":3,"note":"ünïcødé ✉"}';
		$binary = random_bytes( 5000 );
		$this->assertTrue( $client->put_object( 'jobs/j1/status.json', $status )->ok );
		$this->assertTrue( $client->put_object( 'jobs/j 1+/status.json', $binary, 'application/octet-stream' )->ok );

		$read = $client->get_object( 'jobs/j1/status.json' );
		$this->assertTrue( $read->ok, $read->error );
		$this->assertSame( 200, $read->status );
		$this->assertSame( $status, $read->body, 'an SSE-S3 object reads back without encryption headers on the GET' );
		$this->assertSame( $binary, $client->get_object( 'jobs/j 1+/status.json' )->body, 'a key to encode, bytes as they are' );

		$missing = $client->get_object( 'jobs/no-such-job/status.json' );
		$this->assertFalse( $missing->ok );
		$this->assertSame( 404, $missing->status );
		$this->assertStringContainsString( 'NoSuchKey', $missing->error );
		$this->assertSame( '', $missing->body, 'no error document in the body' );

		$large = $client->get_object( 'jobs/j 1+/status.json', 1000 );
		$this->assertFalse( $large->ok, 'larger than asked for: refused, not read' );
		$this->assertStringStartsWith( 'curl error 63: ', $large->error );

		$refused = $this->client( 'not-the-secret' )->get_object( 'jobs/j1/status.json' );
		$this->assertSame( 403, $refused->status );
		$this->assertStringContainsString( 'SignatureDoesNotMatch', $refused->error );
		$this->assertSame( '', $refused->body );
	}

	public function test_wrong_secret_is_refused(): void {
		$results = $this->client( 'not-the-secret' )->put_objects(
			array(
				'queue/refused-1.json' => '{}',
				'queue/refused-2.json' => '{}',
			)
		);
		foreach ( $results as $result ) {
			$this->assertFalse( $result->ok );
			$this->assertSame( 403, $result->status );
			$this->assertStringContainsString( 'SignatureDoesNotMatch', $result->error );
			$this->assertStringNotContainsString( 'not-the-secret', $result->error );
		}
		$stored = self::stored();
		$this->assertArrayNotHasKey( 'queue/refused-1.json', $stored );
	}

	public function test_unknown_bucket_names_the_s3_error(): void {
		$client = new Postbag_S3_Client(
			array(
				'bucket'     => 'no-such-bucket',
				'region'     => self::REGION,
				'endpoint'   => self::$server->endpoint,
				'path_style' => true,
			),
			$this->chain( self::$key['secret_access_key'] )
		);
		$result = $client->put_object( 'queue/x.json', '{}' );
		$this->assertFalse( $result->ok );
		$this->assertSame( 404, $result->status );
		$this->assertStringContainsString( 'NoSuchBucket', $result->error );
	}

	/**
	 * @param string               $secret  Secret access key to sign with.
	 * @param array<string, mixed> $options Extra client options.
	 */
	public function test_uploads_and_reads_go_through_the_proxy_with_its_credentials(): void {
		$proxy = new Postbag_Test_Proxy( 'postbag:proxy secret' );
		try {
			$proxied = array(
				'host' => '127.0.0.1',
				'port' => $proxy->port,
				'auth' => 'postbag:proxy secret',
			);
			$client  = $this->client( self::$key['secret_access_key'], array( 'proxy' => $proxied ) );
			$put     = $client->put_object( 'queue/proxied.json', '{"version":1}' );
			$got     = $client->get_object( 'queue/proxied.json' );
			$refused = $this->client( self::$key['secret_access_key'], array( 'proxy' => array( 'auth' => 'postbag:wrong' ) + $proxied ) )->put_object( 'queue/refused.json', '{}' );
			$requests = $proxy->requests();
		} finally {
			$proxy->stop();
		}

		$this->assertTrue( $put->ok, $put->error );
		$this->assertSame( '{"version":1}', $got->body );
		$this->assertFalse( $refused->ok, 'a proxy refusing the credentials fails the upload' );
		$this->assertSame( 407, $refused->status );
		$this->assertArrayNotHasKey( 'queue/refused.json', self::stored() );
		$this->assertSame( array( 'PUT', 'GET', 'PUT' ), array_column( $requests, 'method' ), 'credentials sent with the first request: no body sent twice' );
		$this->assertSame( self::$server->endpoint . '/' . self::BUCKET . '/queue/proxied.json', $requests[0]['url'], 'curl asked the proxy for the absolute URL' );
		$this->assertSame( 'Basic ' . base64_encode( 'postbag:proxy secret' ), $requests[0]['proxy_authorization'] );
	}

	public function test_a_proxy_needs_a_host_and_a_port(): void {
		$this->expectException( InvalidArgumentException::class );
		$this->client( self::$key['secret_access_key'], array( 'proxy' => array( 'host' => '127.0.0.1' ) ) );
	}

	private function client( string $secret, array $options = array() ): Postbag_S3_Client {
		return new Postbag_S3_Client(
			array_merge(
				array(
					'bucket'     => self::BUCKET,
					'region'     => self::REGION,
					'endpoint'   => self::$server->endpoint,
					'path_style' => true,
					'timeout'    => 10,
				),
				$options
			),
			$this->chain( $secret )
		);
	}

	private function chain( string $secret ): Postbag_Credential_Chain {
		$key = self::$key['access_key_id'];
		return new Postbag_Credential_Chain(
			array(
				'test' => static function () use ( $key, $secret ): Postbag_Credentials {
					return new Postbag_Credentials( $key, $secret );
				},
			)
		);
	}

	/**
	 * An IAM key moto issued, allowed all of S3, and the bucket made with it (moto-s3.py).
	 *
	 * @return array{access_key_id: string, secret_access_key: string}
	 */
	private static function iam_user(): array {
		return Postbag_Test_Python::run( array( __DIR__ . '/moto-s3.py', self::$server->endpoint, 'iam-user', self::BUCKET ) );
	}

	/**
	 * Every object in the bucket, read back with boto3 as the IAM key (support/s3.py).
	 *
	 * @return array<string, array{body_base64: string, content_type: ?string, sse: ?string}> By key.
	 */
	private static function stored(): array {
		$dump = Postbag_Test_Python::run(
			array( dirname( __DIR__ ) . '/support/s3.py', self::$server->endpoint, 'dump', self::BUCKET ),
			array(
				'AWS_ACCESS_KEY_ID'     => self::$key['access_key_id'],
				'AWS_SECRET_ACCESS_KEY' => self::$key['secret_access_key'],
				'AWS_DEFAULT_REGION'    => self::REGION,
			)
		);
		return $dump['objects'];
	}
}
