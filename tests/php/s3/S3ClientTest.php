<?php
/**
 * The S3 client's addressing, options, concurrency cap and failure results.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/support.php';

use PHPUnit\Framework\TestCase;

/**
 * Everything that needs no real S3: URLs for each addressing style, refused
 * options, the cap on parallel uploads (measured by fake-aws-router.php under
 * `php -S` with several workers) and failures that come back as results: a
 * closed port, a server that never answers, missing credentials.
 */
final class Postbag_S3ClientTest extends TestCase {

	/**
	 * @return array<string, array{0: array<string, mixed>, 1: string, 2: string}>
	 */
	public function addressing(): array {
		return array(
			'AWS, virtual-hosted'              => array( array(), 'queue/a b.json', 'https://postbag-bucket.s3.eu-west-1.amazonaws.com/queue/a%20b.json' ),
			'AWS, path-style'                  => array( array( 'path_style' => true ), 'queue/x.json', 'https://s3.eu-west-1.amazonaws.com/postbag-bucket/queue/x.json' ),
			'dotted bucket over https'         => array( array( 'bucket' => 'mail.example.org' ), 'k', 'https://s3.eu-west-1.amazonaws.com/mail.example.org/k' ),
			'custom endpoint on an IP'         => array( array( 'endpoint' => 'http://127.0.0.1:9000/' ), 'k', 'http://127.0.0.1:9000/postbag-bucket/k' ),
			'custom endpoint, virtual-hosted'  => array( array( 'endpoint' => 'https://s3.example.net' ), 'k', 'https://postbag-bucket.s3.example.net/k' ),
			'custom endpoint with a base path' => array(
				array(
					'endpoint'   => 'http://proxy.local:8080/storage',
					'path_style' => true,
				),
				'a/b',
				'http://proxy.local:8080/storage/postbag-bucket/a/b',
			),
			'default port dropped'             => array( array( 'endpoint' => 'https://s3.example.net:443' ), 'k', 'https://postbag-bucket.s3.example.net/k' ),
		);
	}

	/**
	 * @dataProvider addressing
	 * @param array<string, mixed> $options Client options on top of bucket and region.
	 * @param string               $key     Object key.
	 * @param string               $url     Expected request URL.
	 */
	public function test_addressing( array $options, string $key, string $url ): void {
		$request = $this->client( $options )->signed_request( $key, '', 'application/json', new Postbag_Credentials( 'AKIA', 'secret' ) );
		$this->assertSame( $url, $request['url'] );
		$this->assertSame( (string) parse_url( $url, PHP_URL_HOST ) . ( parse_url( $url, PHP_URL_PORT ) ? ':' . parse_url( $url, PHP_URL_PORT ) : '' ), $request['headers']['Host'] );
	}

	public function test_sse_headers(): void {
		$credentials = new Postbag_Credentials( 'AKIA', 'secret' );
		$aes         = $this->client()->signed_request( 'k', '', 'application/json', $credentials )['headers'];
		$kms         = $this->client(
			array(
				'sse'        => 'aws:kms',
				'kms_key_id' => 'alias/postbag',
			)
		)->signed_request( 'k', '', 'application/json', $credentials )['headers'];

		$this->assertSame( 'AES256', $aes['x-amz-server-side-encryption'] );
		$this->assertArrayNotHasKey( 'x-amz-server-side-encryption-aws-kms-key-id', $aes );
		$this->assertSame( 'aws:kms', $kms['x-amz-server-side-encryption'] );
		$this->assertSame( 'alias/postbag', $kms['x-amz-server-side-encryption-aws-kms-key-id'] );
		$this->assertStringContainsString( 'x-amz-server-side-encryption;x-amz-server-side-encryption-aws-kms-key-id', $kms['Authorization'] );
	}

	/**
	 * @return array<string, array{0: array<string, mixed>}>
	 */
	public function bad_options(): array {
		return array(
			'no bucket'             => array( array( 'bucket' => '' ) ),
			'bucket with a slash'   => array( array( 'bucket' => 'a/b' ) ),
			'no region'             => array( array( 'region' => '' ) ),
			'unknown sse'           => array( array( 'sse' => 'none' ) ),
			'kms key without kms'   => array( array( 'kms_key_id' => 'alias/x' ) ),
			'endpoint not http'     => array( array( 'endpoint' => 'ftp://127.0.0.1' ) ),
			'endpoint with a query' => array( array( 'endpoint' => 'http://127.0.0.1/?x=1' ) ),
			'zero concurrency'      => array( array( 'concurrency' => 0 ) ),
			'negative timeout'      => array( array( 'timeout' => -1 ) ),
		);
	}

	/**
	 * @dataProvider bad_options
	 * @param array<string, mixed> $options Client options on top of bucket and region.
	 */
	public function test_bad_options_refused( array $options ): void {
		$this->expectException( InvalidArgumentException::class );
		$this->client( $options );
	}

	/**
	 * @return array<string, array{0: string}>
	 */
	public function bad_keys(): array {
		return array(
			'empty'       => array( '' ),
			'not UTF-8'   => array( "queue/\xff\xfe.json" ),
			'over 1024 B' => array( str_repeat( 'k', 1025 ) ),
		);
	}

	/**
	 * @dataProvider bad_keys
	 */
	public function test_bad_keys_refused( string $key ): void {
		$this->expectException( InvalidArgumentException::class );
		$this->client()->put_objects( array( $key => '{}' ) );
	}

	public function test_content_type_with_a_line_break_refused(): void {
		$this->expectException( InvalidArgumentException::class );
		$this->client()->put_object( 'k', '{}', "application/json\r\nX-Injected: 1" );
	}

	public function test_nothing_to_upload_asks_for_no_credentials(): void {
		$asked  = 0;
		$client = new Postbag_S3_Client(
			array(
				'bucket' => 'postbag-bucket',
				'region' => 'eu-west-1',
			),
			new Postbag_Credential_Chain(
				array(
					'counted' => static function () use ( &$asked ): Postbag_Credentials {
						++$asked;
						return new Postbag_Credentials( 'AKIA', 'secret' );
					},
				)
			)
		);
		$this->assertSame( array(), $client->put_objects( array() ) );
		$this->assertSame( 0, $asked );
	}

	public function test_closed_port_gives_failed_results(): void {
		$client  = $this->client( array( 'endpoint' => 'http://127.0.0.1:' . Postbag_Test_Process::free_port() ) );
		$results = $client->put_objects(
			array(
				'queue/1.json' => '{}',
				'queue/2.json' => '{}',
			)
		);
		$this->assertSame( array( 'queue/1.json', 'queue/2.json' ), array_keys( $results ) );
		foreach ( $results as $result ) {
			$this->assertFalse( $result->ok );
			$this->assertSame( 0, $result->status );
			$this->assertStringStartsWith( 'curl error 7: ', $result->error );
		}
	}

	public function test_server_that_never_answers_times_out(): void {
		// Listens (the kernel completes the handshake) but never reads or answers.
		$silent = stream_socket_server( 'tcp://127.0.0.1:0' );
		$port   = (int) substr( (string) strrchr( (string) stream_socket_get_name( $silent, false ), ':' ), 1 );
		$start  = microtime( true );
		$result = $this->client(
			array(
				'endpoint' => "http://127.0.0.1:$port",
				'timeout'  => 0.5,
			)
		)->put_object( 'queue/slow.json', '{}' );
		fclose( $silent );

		$this->assertFalse( $result->ok );
		$this->assertStringStartsWith( 'curl error 28: ', $result->error );
		$this->assertLessThan( 3.0, microtime( true ) - $start );
	}

	public function test_missing_credentials_give_failed_results_naming_the_providers(): void {
		$client  = new Postbag_S3_Client(
			array(
				'bucket' => 'postbag-bucket',
				'region' => 'eu-west-1',
			),
			new Postbag_Credential_Chain(
				array(
					'nothing' => static function (): Postbag_Credentials {
						throw new Postbag_Credentials_Exception( 'not set' );
					},
				)
			)
		);
		$results = $client->put_objects(
			array(
				'a' => '1',
				'b' => '2',
			)
		);
		$this->assertSame( array( 'a', 'b' ), array_keys( $results ) );
		foreach ( $results as $result ) {
			$this->assertFalse( $result->ok );
			$this->assertSame( 'No AWS credentials found. Tried: nothing (not set).', $result->error );
		}
	}

	public function test_get_object_fails_as_a_result_like_an_upload(): void {
		$closed = $this->client( array( 'endpoint' => 'http://127.0.0.1:' . Postbag_Test_Process::free_port() ) )->get_object( 'jobs/j/status.json' );
		$this->assertFalse( $closed->ok );
		$this->assertSame( 0, $closed->status );
		$this->assertStringStartsWith( 'curl error 7: ', $closed->error );

		$silent = stream_socket_server( 'tcp://127.0.0.1:0' );
		$port   = (int) substr( (string) strrchr( (string) stream_socket_get_name( $silent, false ), ':' ), 1 );
		$start  = microtime( true );
		$slow   = $this->client(
			array(
				'endpoint' => "http://127.0.0.1:$port",
				'timeout'  => 0.5,
			)
		)->get_object( 'jobs/j/status.json' );
		fclose( $silent );
		$this->assertStringStartsWith( 'curl error 28: ', $slow->error, 'the upload timeout bounds a read too' );
		$this->assertLessThan( 3.0, microtime( true ) - $start );

		$nobody = new Postbag_S3_Client(
			array(
				'bucket' => 'postbag-bucket',
				'region' => 'eu-west-1',
			),
			new Postbag_Credential_Chain(
				array(
					'nothing' => static function (): Postbag_Credentials {
						throw new Postbag_Credentials_Exception( 'not set' );
					},
				)
			)
		);
		$this->assertSame( 'No AWS credentials found. Tried: nothing (not set).', $nobody->get_object( 'jobs/j/status.json' )->error );
	}

	/**
	 * @dataProvider bad_keys
	 */
	public function test_get_object_refuses_bad_keys( string $key ): void {
		$this->expectException( InvalidArgumentException::class );
		$this->client()->get_object( $key );
	}

	public function test_get_request_has_no_body_headers(): void {
		$request = $this->client( array( 'sse' => 'aws:kms' ) )->signed_get( 'jobs/a b/status.json', new Postbag_Credentials( 'AKIA', 'secret' ) );
		$this->assertSame( 'https://postbag-bucket.s3.eu-west-1.amazonaws.com/jobs/a%20b/status.json', $request['url'] );
		$this->assertArrayNotHasKey( 'Content-Type', $request['headers'] );
		$this->assertArrayNotHasKey( 'x-amz-server-side-encryption', $request['headers'] );
		$this->assertSame( hash( 'sha256', '' ), $request['headers']['x-amz-content-sha256'] );
	}

	public function test_parallel_uploads_stay_within_the_concurrency_cap(): void {
		$fake = new Postbag_S3_Test_Fake_Aws( array( 's3_delay_ms' => 150 ), 6 );
		try {
			$bodies = array();
			for ( $i = 0; $i < 9; $i++ ) {
				$bodies[ "queue/$i.json" ] = str_repeat( (string) $i, 2000 );
			}
			$results  = $this->client(
				array(
					'bucket'      => 'fake-s3',
					'endpoint'    => $fake->endpoint,
					'concurrency' => 3,
				)
			)->put_objects( $bodies );
			$requests = $fake->requests();
		} finally {
			$fake->stop();
		}
		foreach ( $results as $key => $result ) {
			$this->assertTrue( $result->ok, "$key: {$result->error}" );
		}
		$this->assertCount( 9, $requests );
		$this->assertSame( 3, self::most_at_once( $requests ), 'three in flight at once, never more' );
	}

	/**
	 * The largest number of requests the server was serving at the same moment.
	 *
	 * @param array<int, array{start: float, end: float}> $requests Served requests.
	 */
	private static function most_at_once( array $requests ): int {
		$events = array();
		foreach ( $requests as $request ) {
			$events[] = array( $request['start'], 1 );
			$events[] = array( $request['end'], -1 );
		}
		// At equal times, count an end before a start.
		usort(
			$events,
			static function ( array $a, array $b ): int {
				return $a[0] <=> $b[0] ?: $a[1] <=> $b[1];
			}
		);
		$now  = 0;
		$most = 0;
		foreach ( $events as $event ) {
			$now += $event[1];
			$most = max( $most, $now );
		}
		return $most;
	}

	/**
	 * @param array<string, mixed> $options Client options on top of bucket and region.
	 */
	private function client( array $options = array() ): Postbag_S3_Client {
		return new Postbag_S3_Client(
			array_merge(
				array(
					'bucket' => 'postbag-bucket',
					'region' => 'eu-west-1',
				),
				$options
			),
			new Postbag_Credential_Chain(
				array(
					'test' => static function (): Postbag_Credentials {
						return new Postbag_Credentials( 'AKIATEST', 'secret' );
					},
				)
			)
		);
	}
}
