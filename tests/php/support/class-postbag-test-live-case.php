<?php
/**
 * Base class for tests against the real WordPress and moto's S3 on 127.0.0.1.
 *
 * @package Postbag\Tests
 */

use PHPUnit\Framework\TestCase;

/**
 * One moto server per test class, a bucket per test. Each test gets the
 * site's plugin rebuilt the way wp-config.php would configure it (the real S3
 * client and credential chain, credentials from the environment), pointed at
 * an endpoint the test chooses, with its own spool; hooks, environment and
 * the active plugin are restored afterwards.
 */
abstract class Postbag_Test_Live_Case extends TestCase {
	use Postbag_Test_Site_State;

	const MARKER = 'nonpriority@asynchronous.mail';

	/** @var Postbag_Test_Local_Aws|null */
	protected static $aws;

	/** @var string A fresh bucket for each test. */
	protected $bucket;

	/** @var Postbag_Plugin|null */
	protected $plugin;

	/** @var string|null */
	protected $spool_dir;

	/** @var array<string, string|false> */
	private $saved_env = array();

	public static function setUpBeforeClass(): void {
		parent::setUpBeforeClass();
		self::$aws = new Postbag_Test_Local_Aws();
	}

	public static function tearDownAfterClass(): void {
		if ( null !== self::$aws ) {
			self::$aws->stop();
			self::$aws = null;
		}
		parent::tearDownAfterClass();
	}

	protected function setUp(): void {
		parent::setUp();
		$this->save_site_state();
		// What a site on EC2 without wp-config.php keys would have; never the
		// instance metadata service, which is not on 127.0.0.1.
		$this->set_env(
			array(
				'AWS_ACCESS_KEY_ID'         => Postbag_Test_Local_Aws::ACCESS_KEY_ID,
				'AWS_SECRET_ACCESS_KEY'     => Postbag_Test_Local_Aws::SECRET_ACCESS_KEY,
				'AWS_SESSION_TOKEN'         => false,
				'AWS_EC2_METADATA_DISABLED' => 'true',
				'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI' => false,
				'AWS_CONTAINER_CREDENTIALS_FULL_URI'     => false,
			)
		);
		$this->bucket = 'postbag-' . bin2hex( random_bytes( 4 ) );
		self::$aws->s3( array( 'create-bucket', $this->bucket ) );
		$this->spool_dir = Postbag_Test_WordPress::$sandbox->path( 'spool-' . bin2hex( random_bytes( 4 ) ) );
		$this->take_over_site( $this->plugin_for( self::$aws->endpoint ) );
	}

	protected function tearDown(): void {
		if ( null !== $this->plugin ) {
			// Nothing a test queued may be uploaded by the run's own shutdown.
			$this->plugin->queue()->drain( time() );
			$this->plugin->remove_hooks();
		}
		$this->restore_site_state();
		foreach ( $this->saved_env as $name => $value ) {
			putenv( false === $value ? $name : "$name=$value" );
		}
		if ( null !== $this->spool_dir && is_dir( $this->spool_dir ) ) {
			Postbag_Test_Sandbox::remove_tree( $this->spool_dir );
		}
		parent::tearDown();
	}

	/**
	 * The plugin as wp-config.php constants would make it, aimed at `$endpoint`.
	 *
	 * @param string        $endpoint S3 endpoint.
	 * @param callable|null $clock    Unix time; default time().
	 * @param array         $settings Other Postbag_Config settings.
	 */
	protected function plugin_for( string $endpoint, ?callable $clock = null, array $settings = array() ): Postbag_Plugin {
		$config       = Postbag_Config::from_constants(
			array_merge(
				array(
					'bucket'         => $this->bucket,
					'region'         => Postbag_Test_Local_Aws::REGION,
					'endpoint'       => $endpoint,
					'path_style'     => true,
					'spool_dir'      => $this->spool_dir,
					'upload_timeout' => 5,
				),
				$settings
			)
		);
		$this->plugin = new Postbag_Plugin( $config, null, $clock, new Postbag_Spool( $config->get( 'spool_dir' ) ) );
		return $this->plugin;
	}

	/**
	 * Makes `$plugin` the site's plugin (as if wp-config.php had changed).
	 */
	protected function switch_to( Postbag_Plugin $plugin ): void {
		Postbag_Plugin::replace( $plugin );
	}

	/**
	 * Flushes the plugin, asserting that no batch failed to upload (the flush
	 * reports failures only).
	 *
	 * @return string[] Ids of the batches this flush uploaded, in order.
	 */
	protected function flush_uploaded(): array {
		$before = count( $this->fired['postbag_batch_uploaded'] ?? array() );
		$this->assertSame( array(), $this->plugin->flush(), 'upload failures' );
		return array_map( 'strval', array_column( array_slice( $this->fired['postbag_batch_uploaded'] ?? array(), $before ), 0 ) );
	}

	/**
	 * Skips a test that needs php-fpm where it is not installed (a failure when CI=true).
	 */
	protected function require_php_fpm(): void {
		$this->require_binary( 'php-fpm', Postbag_Test_Php_Fpm::binary() );
	}

	/**
	 * Skips a test that serves WordPress through nginx and php-fpm where either is not
	 * installed (a failure when CI=true).
	 */
	protected function require_nginx_and_php_fpm(): void {
		$this->require_binary( 'nginx', Postbag_Test_Nginx::binary() );
		$this->require_php_fpm();
	}

	/**
	 * Skips the test (fails it when CI=true) when a Debian package's binary is missing.
	 *
	 * @param string      $package Debian package, named in the message.
	 * @param string|null $binary  Its binary's path; null when not installed.
	 */
	private function require_binary( string $package, ?string $binary ): void {
		if ( null === $binary ) {
			$reason = "$package is not installed (Debian package $package)";
			'true' === getenv( 'CI' ) ? $this->fail( $reason ) : $this->markTestSkipped( $reason . '; a failure when CI=true' );
		}
	}

	/**
	 * `standin.proxy --gated` in front of moto: lets no request through
	 * until it gets SIGUSR1. Stop it in a `finally`.
	 *
	 * @param string $name Name of its log in the sandbox.
	 * @return array{0: Postbag_Test_Process, 1: int} The proxy and its port.
	 */
	protected function gated_proxy( string $name ): array {
		$gate = new Postbag_Test_Process(
			array( Postbag_Test_Python::binary(), '-m', 'standin.proxy', (string) parse_url( self::$aws->endpoint, PHP_URL_PORT ), '--gated' ),
			Postbag_Test_WordPress::$sandbox->path( "$name.log" ),
			null,
			true
		);
		$port = (string) $gate->read_line( 30 );
		if ( ! preg_match( '/^\d+$/', $port ) ) {
			$gate->stop();
		}
		$this->assertMatchesRegularExpression( '/^\d+$/', $port, 'gate proxy port' );
		return array( $gate, (int) $port );
	}

	/**
	 * FastCGI parameters of a page under integration/requests/ served by
	 * PHP-FPM: the generated wp-config.php, and the constants of a site using
	 * this test's bucket and spool, with S3 at `$endpoint` (behind a gate: give
	 * an upload timeout longer than the test holds it).
	 *
	 * @param string $endpoint  S3 endpoint.
	 * @param array  $constants More wp-config.php constants.
	 * @param array  $params    More FastCGI parameters.
	 */
	protected function page_params( string $endpoint, array $constants, array $params = array() ): array {
		return $params + array(
			'POSTBAG_TEST_WP_CONFIG' => Postbag_Test_WordPress::$sandbox->path( 'wp-config.php' ),
			'POSTBAG_TEST_CONSTANTS' => json_encode(
				$constants + array(
					'POSTBAG_BUCKET'                => $this->bucket,
					'POSTBAG_ENDPOINT'              => $endpoint,
					'POSTBAG_PATH_STYLE'            => true,
					'POSTBAG_AWS_ACCESS_KEY_ID'     => Postbag_Test_Local_Aws::ACCESS_KEY_ID,
					'POSTBAG_AWS_SECRET_ACCESS_KEY' => Postbag_Test_Local_Aws::SECRET_ACCESS_KEY,
					'POSTBAG_SPOOL_DIR'             => $this->spool_dir,
				)
			),
		);
	}

	/**
	 * Runs a WP-Cron event as wp-cron.php would at `$time`, the site's plugin
	 * rebuilt from its settings with S3 (moto) answering.
	 *
	 * @param object $event From wp_get_scheduled_event().
	 * @param int    $time  Unix time the plugin sees.
	 */
	protected function run_cron_event_at( object $event, int $time ): void {
		$this->switch_to(
			$this->plugin_for(
				self::$aws->endpoint,
				static function () use ( $time ): int {
					return $time;
				}
			)
		);
		do_action_ref_array( $event->hook, $event->args );
	}

	/**
	 * An endpoint nothing listens on.
	 */
	protected static function closed_endpoint(): string {
		return 'http://127.0.0.1:' . Postbag_Test_Process::free_port();
	}

	/**
	 * Every object under `$prefix`, read back with boto3.
	 *
	 * @return array<string, array{body: string, content_type: ?string, sse: ?string}> By key, sorted.
	 */
	protected function objects( string $prefix = 'queue/' ): array {
		$objects = array();
		foreach ( self::$aws->s3( array( 'dump', $this->bucket, $prefix ) )['objects'] as $key => $object ) {
			$objects[ $key ] = array(
				'body'         => base64_decode( $object['body_base64'], true ),
				'content_type' => $object['content_type'],
				'sse'          => $object['sse'],
			);
		}
		return $objects;
	}

	/**
	 * The batch files in the bucket, decoded, by key.
	 *
	 * @param array<string, array> $objects From objects().
	 * @return array<string, array>
	 */
	protected static function batches( array $objects ): array {
		$batches = array();
		foreach ( $objects as $key => $object ) {
			if ( '.json' === substr( $key, -5 ) ) {
				$batches[ $key ] = json_decode( $object['body'], true, 512, JSON_THROW_ON_ERROR );
			}
		}
		return $batches;
	}

	/**
	 * Sets (string) or unsets (false) environment variables until tearDown().
	 *
	 * @param array<string, string|false> $values
	 */
	private function set_env( array $values ): void {
		foreach ( $values as $name => $value ) {
			if ( ! array_key_exists( $name, $this->saved_env ) ) {
				$this->saved_env[ $name ] = getenv( $name );
			}
			putenv( false === $value ? $name : "$name=$value" );
		}
	}

	/**
	 * A file in the sandbox.
	 */
	protected static function file( string $name, string $contents ): string {
		$dir  = Postbag_Test_WordPress::$sandbox->path( 'files-' . bin2hex( random_bytes( 4 ) ), true );
		$path = $dir . '/' . $name;
		file_put_contents( $path, $contents );
		return $path;
	}
}
