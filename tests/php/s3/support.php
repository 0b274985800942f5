<?php
/**
 * What the S3 tests load: the plugin classes under test (no WordPress needed)
 * and the shared test harness (Python runner, moto's server, child processes).
 *
 * @package Postbag\Tests
 */

foreach ( array( 'Postbag_Credentials_Exception', 'Postbag_Credentials', 'Postbag_Credential_Chain', 'Postbag_SigV4_Signer', 'Postbag_S3_Result', 'Postbag_S3_Client' ) as $postbag_s3_class ) {
	// Under WordPress the plugin's autoloader may have them already (through the plugins/ symlink).
	if ( ! class_exists( $postbag_s3_class ) ) {
		require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/aws/class-' . strtolower( str_replace( '_', '-', $postbag_s3_class ) ) . '.php';
	}
}
require_once dirname( __DIR__ ) . '/support/autoload.php';

/**
 * Where a test needs something from outside (a download, a server), a missing
 * piece fails the test in CI and skips it, with the reason, on a laptop.
 */
final class Postbag_S3_Test_Needs {

	/**
	 * @param \PHPUnit\Framework\TestCase $test   The test that cannot run.
	 * @param string                      $reason What is missing and how to get it.
	 */
	public static function unavailable( \PHPUnit\Framework\TestCase $test, string $reason ): void {
		if ( 'true' === getenv( 'CI' ) ) {
			$test->fail( $reason );
		}
		$test->markTestSkipped( $reason . ' (a failure when CI=true)' );
	}
}

/**
 * fake-aws-router.php under `php -S` on 127.0.0.1, started by a test and
 * stopped by its PID.
 */
final class Postbag_S3_Test_Fake_Aws {

	/** @var string e.g. http://127.0.0.1:40123 */
	public $endpoint;

	/** @var Postbag_Test_Process|null */
	private $process;

	/** @var string */
	private $state_file;

	/** @var string */
	private $log_file;

	/**
	 * @param array<string, mixed> $state   What the fake answers, see fake-aws-router.php.
	 * @param int                  $workers Requests served at once (PHP_CLI_SERVER_WORKERS).
	 */
	public function __construct( array $state, int $workers = 1 ) {
		$this->state_file = (string) tempnam( sys_get_temp_dir(), 'postbag-fake-state-' );
		$this->log_file   = (string) tempnam( sys_get_temp_dir(), 'postbag-fake-log-' );
		$this->set_state( $state );

		$port           = Postbag_Test_Process::free_port();
		$this->endpoint = "http://127.0.0.1:$port";

		$env           = array_merge(
			getenv(),
			array(
				'POSTBAG_FAKE_STATE'     => $this->state_file,
				'POSTBAG_FAKE_LOG'       => $this->log_file,
				'PHP_CLI_SERVER_WORKERS' => (string) $workers,
			)
		);
		$this->process = new Postbag_Test_Process(
			array( PHP_BINARY, '-S', "127.0.0.1:$port", __DIR__ . '/fake-aws-router.php' ),
			'/dev/null',
			$env
		);
		$deadline = microtime( true ) + 10;
		while ( ! $this->answers( $port ) ) {
			if ( microtime( true ) > $deadline || ! $this->process->is_running() ) {
				$this->stop();
				throw new RuntimeException( "php -S did not start on port $port" );
			}
			usleep( 20000 );
		}
	}

	/**
	 * @param array<string, mixed> $state What the fake answers from now on.
	 */
	public function set_state( array $state ): void {
		// Written aside and renamed: a request must never read a half-written state.
		file_put_contents( $this->state_file . '.new', json_encode( $state ) );
		rename( $this->state_file . '.new', $this->state_file );
	}

	/**
	 * Requests served so far, oldest first.
	 *
	 * @return array<int, array{method: string, path: string, headers: array<string, string>, start: float, end: float}>
	 */
	public function requests(): array {
		$lines = array_filter( explode( "\n", (string) file_get_contents( $this->log_file ) ) );
		return array_map(
			static function ( string $line ): array {
				return json_decode( $line, true );
			},
			array_values( $lines )
		);
	}

	public function stop(): void {
		if ( null !== $this->process ) {
			// php -S leaves its forked workers running when the master gets SIGTERM.
			foreach ( self::children( $this->process->pid ) as $worker ) {
				posix_kill( $worker, SIGTERM );
			}
			$this->process->stop();
			$this->process = null;
		}
		foreach ( array( $this->state_file, $this->log_file ) as $file ) {
			if ( is_file( $file ) ) {
				unlink( $file );
			}
		}
	}

	/**
	 * PIDs of a process's children, from /proc.
	 *
	 * @param int $parent Parent PID.
	 * @return int[]
	 */
	private static function children( int $parent ): array {
		$children = array();
		foreach ( (array) glob( '/proc/[0-9]*/stat' ) as $stat ) {
			$line = @file_get_contents( $stat ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- processes come and go.
			// "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
			$fields = false === $line ? array() : explode( ' ', substr( $line, (int) strrpos( $line, ')' ) + 2 ) );
			if ( isset( $fields[1] ) && (int) $fields[1] === $parent ) {
				$children[] = (int) basename( dirname( $stat ) );
			}
		}
		return $children;
	}

	private function answers( int $port ): bool {
		$socket = @fsockopen( '127.0.0.1', $port, $errno, $errstr, 0.2 ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- refused until it listens.
		if ( false === $socket ) {
			return false;
		}
		fclose( $socket );
		return true;
	}
}
