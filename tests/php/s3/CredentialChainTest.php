<?php
/**
 * Where credentials come from: constants, environment, ECS, IMDSv2.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/support.php';

use PHPUnit\Framework\TestCase;

/**
 * The default chain runs in a fresh PHP process (credential-chain-probe.php)
 * with a chosen environment and constants; ECS and IMDS answer from
 * fake-aws-router.php under `php -S` on 127.0.0.1. Nothing here contacts
 * 169.254.x.x: every test sets AWS_EC2_METADATA_DISABLED or points the
 * endpoints at the fake.
 */
final class Postbag_CredentialChainTest extends TestCase {

	const VARIABLES = array(
		'AWS_ACCESS_KEY_ID',
		'AWS_SECRET_ACCESS_KEY',
		'AWS_SESSION_TOKEN',
		'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
		'AWS_CONTAINER_CREDENTIALS_FULL_URI',
		'AWS_CONTAINER_AUTHORIZATION_TOKEN',
		'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE',
		'AWS_EC2_METADATA_SERVICE_ENDPOINT',
		'AWS_EC2_METADATA_DISABLED',
	);

	/** 2026-11-22T07:00:00Z. */
	const NOW = 1795330800;

	/** @var Postbag_S3_Test_Fake_Aws|null */
	private static $fake;

	/** @var array<string, string|false> The environment before the test. */
	private $saved = array();

	/** @var int Requests the fake had served before this test. */
	private $served_before = 0;

	public static function setUpBeforeClass(): void {
		self::$fake = new Postbag_S3_Test_Fake_Aws( self::state() );
	}

	public static function tearDownAfterClass(): void {
		if ( null !== self::$fake ) {
			self::$fake->stop();
			self::$fake = null;
		}
	}

	protected function setUp(): void {
		foreach ( self::VARIABLES as $name ) {
			$this->saved[ $name ] = getenv( $name );
			putenv( $name );
		}
		putenv( 'AWS_EC2_METADATA_DISABLED=true' );
		self::$fake->set_state( self::state() );
		$this->served_before = count( self::$fake->requests() );
		Postbag_Credential_Chain::forget_cached();
	}

	protected function tearDown(): void {
		foreach ( $this->saved as $name => $value ) {
			putenv( false === $value ? $name : "$name=$value" );
		}
		Postbag_Credential_Chain::forget_cached();
	}

	public function test_constants_beat_the_environment(): void {
		$answer = $this->probe(
			array(
				'POSTBAG_AWS_ACCESS_KEY_ID'     => 'AKIACONSTANTS',
				'POSTBAG_AWS_SECRET_ACCESS_KEY' => 'constant-secret',
				'POSTBAG_AWS_SESSION_TOKEN'     => 'constant-token',
			),
			array(
				'AWS_ACCESS_KEY_ID'     => 'AKIAENVIRONMENT',
				'AWS_SECRET_ACCESS_KEY' => 'env-secret',
			)
		);
		$this->assertSame(
			array(
				'access_key_id'     => 'AKIACONSTANTS',
				'secret_access_key' => 'constant-secret',
				'session_token'     => 'constant-token',
				'source'            => 'constants',
			),
			$answer
		);
	}

	public function test_environment_when_no_constants(): void {
		$answer = $this->probe(
			array(),
			array(
				'AWS_ACCESS_KEY_ID'     => 'AKIAENVIRONMENT',
				'AWS_SECRET_ACCESS_KEY' => 'env-secret',
				'AWS_SESSION_TOKEN'     => 'env-token',
			)
		);
		$this->assertSame(
			array(
				'access_key_id'     => 'AKIAENVIRONMENT',
				'secret_access_key' => 'env-secret',
				'session_token'     => 'env-token',
				'source'            => 'environment',
			),
			$answer
		);
	}

	public function test_default_chain_reaches_the_container_endpoint(): void {
		$answer = $this->probe(
			array(),
			array(
				'AWS_CONTAINER_CREDENTIALS_FULL_URI' => self::$fake->endpoint . '/ecs/credentials',
				'AWS_EC2_METADATA_SERVICE_ENDPOINT'  => self::$fake->endpoint,
			)
		);
		$this->assertSame( 'ecs', $answer['source'] ?? $answer['error'] );
		$this->assertSame( 'ASIAECSFAKE', $answer['access_key_id'] );
	}

	public function test_default_chain_reaches_the_instance_role(): void {
		$answer = $this->probe( array(), array( 'AWS_EC2_METADATA_SERVICE_ENDPOINT' => self::$fake->endpoint ) );
		$this->assertSame( 'imds', $answer['source'] ?? $answer['error'] );
		$this->assertSame( 'ASIAIMDSFAKE', $answer['access_key_id'] );
	}

	public function test_error_names_every_provider_tried_and_no_secret(): void {
		$answer = $this->probe(
			array( 'POSTBAG_AWS_ACCESS_KEY_ID' => 'AKIAHALFCONFIGURED' ),
			array(
				'AWS_SECRET_ACCESS_KEY'     => 'lonely-env-secret',
				'AWS_EC2_METADATA_DISABLED' => 'true',
			)
		);
		$this->assertArrayHasKey( 'error', $answer );
		$this->assertSame(
			'No AWS credentials found. Tried: '
			. 'constants (POSTBAG_AWS_ACCESS_KEY_ID set without POSTBAG_AWS_SECRET_ACCESS_KEY); '
			. 'environment (AWS_SECRET_ACCESS_KEY set without AWS_ACCESS_KEY_ID); '
			. 'ecs (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI not set); '
			. 'imds (disabled by AWS_EC2_METADATA_DISABLED).',
			$answer['error']
		);
		$this->assertStringNotContainsString( 'lonely-env-secret', $answer['error'] );
	}

	public function test_ecs_relative_uri(): void {
		putenv( 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/ecs/credentials' );
		$credentials = $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider( self::$fake->endpoint ) ) )->get();

		$this->assertSame( 'ASIAECSFAKE', $credentials->access_key_id() );
		$this->assertSame( 'ecs-secret', $credentials->secret_access_key() );
		$this->assertSame( 'ecs-token', $credentials->session_token() );
		$this->assertSame( self::NOW + 3600, $credentials->expires_at() );
		$this->assertSame( 'ecs', $credentials->source() );
		$this->assertSame( array( 'GET /ecs/credentials' ), $this->requests() );
	}

	public function test_ecs_full_uri_sends_the_authorization_token(): void {
		putenv( 'AWS_CONTAINER_CREDENTIALS_FULL_URI=' . self::$fake->endpoint . '/ecs/credentials' );
		putenv( 'AWS_CONTAINER_AUTHORIZATION_TOKEN=Basic c2VjcmV0LXRva2Vu' );
		self::$fake->set_state( array_merge( self::state(), array( 'ecs_token' => 'Basic c2VjcmV0LXRva2Vu' ) ) );

		$credentials = $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider() ) )->get();
		$this->assertSame( 'ASIAECSFAKE', $credentials->access_key_id() );
	}

	public function test_ecs_token_file_wins_over_token_variable(): void {
		$file = (string) tempnam( sys_get_temp_dir(), 'postbag-token-' );
		file_put_contents( $file, "from-file\n" );
		putenv( 'AWS_CONTAINER_CREDENTIALS_FULL_URI=' . self::$fake->endpoint . '/ecs/credentials' );
		putenv( 'AWS_CONTAINER_AUTHORIZATION_TOKEN=from-variable' );
		putenv( "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=$file" );
		self::$fake->set_state( array_merge( self::state(), array( 'ecs_token' => 'from-file' ) ) );

		try {
			$credentials = $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider() ) )->get();
		} finally {
			unlink( $file );
		}
		$this->assertSame( 'ASIAECSFAKE', $credentials->access_key_id() );
	}

	public function test_ecs_wrong_token_is_reported_without_the_token(): void {
		putenv( 'AWS_CONTAINER_CREDENTIALS_FULL_URI=' . self::$fake->endpoint . '/ecs/credentials' );
		putenv( 'AWS_CONTAINER_AUTHORIZATION_TOKEN=wrong-token' );
		self::$fake->set_state( array_merge( self::state(), array( 'ecs_token' => 'right-token' ) ) );

		$message = $this->failure( $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider() ) ) );
		$this->assertSame( 'No AWS credentials found. Tried: ecs (container endpoint answered HTTP 401).', $message );
	}

	/**
	 * @testWith ["http://example.com/credentials"]
	 *           ["http://10.0.0.1/credentials"]
	 *           ["ftp://127.0.0.1/credentials"]
	 */
	public function test_full_uri_must_be_https_or_local( string $uri ): void {
		putenv( "AWS_CONTAINER_CREDENTIALS_FULL_URI=$uri" );
		$message = $this->failure( $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider() ) ) );
		$this->assertStringContainsString( 'must be https, or http to a loopback or ECS/EKS host', $message );
		$this->assertSame( array(), $this->requests() );
	}

	public function test_imds_v2_token_then_role_then_credentials(): void {
		putenv( 'AWS_EC2_METADATA_DISABLED' );
		putenv( 'AWS_EC2_METADATA_SERVICE_ENDPOINT=' . self::$fake->endpoint . '/' );
		$credentials = $this->chain( array( 'imds' => Postbag_Credential_Chain::imds_provider() ) )->get();

		$this->assertSame( 'ASIAIMDSFAKE', $credentials->access_key_id() );
		$this->assertSame( 'imds-secret', $credentials->secret_access_key() );
		$this->assertSame( 'imds-token', $credentials->session_token() );
		$this->assertSame( self::NOW + 21600, $credentials->expires_at() );

		$requests = $this->served();
		$this->assertSame(
			array(
				'PUT /latest/api/token',
				'GET /latest/meta-data/iam/security-credentials/',
				'GET /latest/meta-data/iam/security-credentials/postbag-web role',
			),
			$this->requests()
		);
		$this->assertSame( '21600', $requests[0]['headers']['x-aws-ec2-metadata-token-ttl-seconds'] ?? null );
		$this->assertSame( 'fake-imds-session-token', $requests[1]['headers']['x-aws-ec2-metadata-token'] ?? null );
		$this->assertSame( 'fake-imds-session-token', $requests[2]['headers']['x-aws-ec2-metadata-token'] ?? null );
	}

	public function test_imds_disabled_sends_nothing(): void {
		putenv( 'AWS_EC2_METADATA_SERVICE_ENDPOINT=' . self::$fake->endpoint );
		putenv( 'AWS_EC2_METADATA_DISABLED=TRUE' );
		$message = $this->failure( $this->chain( array( 'imds' => Postbag_Credential_Chain::imds_provider() ) ) );
		$this->assertSame( 'No AWS credentials found. Tried: imds (disabled by AWS_EC2_METADATA_DISABLED).', $message );
		$this->assertSame( array(), $this->requests() );
	}

	public function test_unreachable_metadata_endpoint_fails_fast(): void {
		putenv( 'AWS_EC2_METADATA_DISABLED' );
		putenv( 'AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:' . Postbag_Test_Process::free_port() );
		$start   = microtime( true );
		$message = $this->failure( $this->chain( array( 'imds' => Postbag_Credential_Chain::imds_provider() ) ) );
		$this->assertStringStartsWith( 'No AWS credentials found. Tried: imds (no answer: ', $message );
		$this->assertLessThan( 1.5, microtime( true ) - $start );
	}

	public function test_temporary_credentials_cached_until_shortly_before_expiry(): void {
		putenv( 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/ecs/credentials' );
		$now   = self::NOW;
		$chain = $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider( self::$fake->endpoint ) ), $now );

		$first = $chain->get();
		$now   = self::NOW + 3600 - Postbag_Credential_Chain::REFRESH_MARGIN - 1;
		$this->assertSame( $first, $chain->get(), 'cached while more than the margin is left' );
		$this->assertCount( 1, $this->requests() );

		$this->assertSame( $first, $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider( self::$fake->endpoint ) ), $now )->get(), 'shared by chains in the same request' );

		self::$fake->set_state( self::state( 'ASIAECSROTATED', self::NOW + 7200 ) );
		$now     = self::NOW + 3600 - Postbag_Credential_Chain::REFRESH_MARGIN;
		$rotated = $chain->get();
		$this->assertSame( 'ASIAECSROTATED', $rotated->access_key_id(), 'fetched again within the margin' );
		$this->assertCount( 2, $this->requests() );
	}

	public function test_failed_refresh_falls_back_on_credentials_not_yet_expired(): void {
		putenv( 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/ecs/credentials' );
		$now   = self::NOW;
		$chain = $this->chain( array( 'ecs' => Postbag_Credential_Chain::ecs_provider( self::$fake->endpoint ) ), $now );
		$first = $chain->get();

		self::$fake->set_state( array_merge( self::state(), array( 'ecs' => array( 'Message' => 'throttled' ) ) ) );
		$now = self::NOW + 3600 - 60;
		$this->assertSame( $first, $chain->get(), 'still valid for a minute' );

		$now = self::NOW + 3600;
		$this->assertSame( 'No AWS credentials found. Tried: ecs (container endpoint answered without credentials).', $this->failure( $chain ) );
	}

	public function test_long_term_credentials_are_read_each_time(): void {
		$chain = $this->chain( array( 'environment' => array( Postbag_Credential_Chain::class, 'from_environment' ) ) );
		putenv( 'AWS_ACCESS_KEY_ID=AKIAFIRST' );
		putenv( 'AWS_SECRET_ACCESS_KEY=first' );
		$this->assertSame( 'AKIAFIRST', $chain->get()->access_key_id() );
		putenv( 'AWS_ACCESS_KEY_ID=AKIASECOND' );
		$this->assertSame( 'AKIASECOND', $chain->get()->access_key_id() );
	}

	public function test_injected_providers_asked_in_order(): void {
		$asked = array();
		$chain = $this->chain(
			array(
				'first'  => static function () use ( &$asked ): Postbag_Credentials {
					$asked[] = 'first';
					throw new Postbag_Credentials_Exception( 'nothing here' );
				},
				'second' => static function () use ( &$asked ): Postbag_Credentials {
					$asked[] = 'second';
					return new Postbag_Credentials( 'AKIASECOND', 'secret', null, null, 'second' );
				},
				'third'  => static function () use ( &$asked ): Postbag_Credentials {
					$asked[] = 'third';
					return new Postbag_Credentials( 'AKIATHIRD', 'secret' );
				},
			)
		);
		$this->assertSame( 'AKIASECOND', $chain->get()->access_key_id() );
		$this->assertSame( array( 'first', 'second' ), $asked );
	}

	/**
	 * What the fake hands out.
	 *
	 * @param string $ecs_key     AccessKeyId from the container endpoint.
	 * @param int    $ecs_expires Its expiry.
	 * @return array<string, mixed>
	 */
	private static function state( string $ecs_key = 'ASIAECSFAKE', int $ecs_expires = self::NOW + 3600 ): array {
		return array(
			'role' => 'postbag-web role',
			'ecs'  => array(
				'AccessKeyId'     => $ecs_key,
				'SecretAccessKey' => 'ecs-secret',
				'Token'           => 'ecs-token',
				'Expiration'      => gmdate( 'Y-m-d\TH:i:s\Z', $ecs_expires ),
			),
			'imds' => array(
				'Code'            => 'Success',
				'Type'            => 'AWS-HMAC',
				'AccessKeyId'     => 'ASIAIMDSFAKE',
				'SecretAccessKey' => 'imds-secret',
				'Token'           => 'imds-token',
				'Expiration'      => gmdate( 'Y-m-d\TH:i:s\Z', self::NOW + 21600 ),
			),
		);
	}

	/**
	 * A chain over the given providers; the clock reads $now by reference.
	 *
	 * @param array<string, callable> $providers Providers in order.
	 * @param int                     $now       Unix time the chain sees.
	 */
	private function chain( array $providers, int &$now = self::NOW ): Postbag_Credential_Chain {
		return new Postbag_Credential_Chain(
			$providers,
			static function () use ( &$now ): int {
				return $now;
			}
		);
	}

	private function failure( Postbag_Credential_Chain $chain ): string {
		try {
			$chain->get();
		} catch ( Postbag_Credentials_Exception $e ) {
			return $e->getMessage();
		}
		$this->fail( 'Expected Postbag_Credentials_Exception' );
	}

	/**
	 * Requests the fake served during this test.
	 *
	 * @return array<int, array{method: string, path: string, headers: array<string, string>}>
	 */
	private function served(): array {
		return array_slice( self::$fake->requests(), $this->served_before );
	}

	/**
	 * Requests the fake served during this test, as "METHOD /path".
	 *
	 * @return string[]
	 */
	private function requests(): array {
		return array_map(
			static function ( array $request ): string {
				return $request['method'] . ' ' . $request['path'];
			},
			$this->served()
		);
	}

	/**
	 * Runs the default chain in a fresh PHP process.
	 *
	 * @param array<string, string> $constants Constants to define first.
	 * @param array<string, string> $env       The whole AWS part of its environment.
	 * @return array<string, string|null>
	 */
	private function probe( array $constants, array $env ): array {
		$process = proc_open(
			array( PHP_BINARY, __DIR__ . '/credential-chain-probe.php', (string) json_encode( $constants ) ),
			array(
				1 => array( 'pipe', 'w' ),
				2 => array( 'pipe', 'w' ),
			),
			$pipes,
			null,
			array_merge( array( 'PATH' => (string) getenv( 'PATH' ) ), $env )
		);
		$out = stream_get_contents( $pipes[1] );
		$err = stream_get_contents( $pipes[2] );
		fclose( $pipes[1] );
		fclose( $pipes[2] );
		$this->assertSame( 0, proc_close( $process ), (string) $err );
		return json_decode( (string) $out, true, 8, JSON_THROW_ON_ERROR );
	}
}
