<?php
/**
 * moto's server on 127.0.0.1 for a test, through `python -m standin.aws`.
 *
 * @package Postbag\Tests
 */

/**
 * Starts the local stand-in for AWS and stops it by the PID it prints.
 * Anything still running when PHP shuts down is stopped by the harness.
 */
final class Postbag_Test_Local_Aws {

	const ACCESS_KEY_ID     = 'testing';
	const SECRET_ACCESS_KEY = 'testing';
	const REGION            = 'us-east-1';

	/** @var string e.g. http://127.0.0.1:40123 */
	public $endpoint;

	/** @var int PID of moto's server. */
	public $pid;

	/** @var Postbag_Test_Process|null The `standin.aws` wrapper. */
	private $wrapper;

	/**
	 * The wp-config.php constants of a site whose plugin uploads to this
	 * server: what a request in a child process defines before WordPress loads.
	 *
	 * @param string $endpoint  The server's endpoint (or a proxy's).
	 * @param string $bucket    The bucket.
	 * @param string $spool_dir The plugin's spool directory.
	 */
	public static function site_constants( string $endpoint, string $bucket, string $spool_dir ): array {
		return array(
			'POSTBAG_BUCKET'                => $bucket,
			'POSTBAG_REGION'                => self::REGION,
			'POSTBAG_ENDPOINT'              => $endpoint,
			'POSTBAG_PATH_STYLE'            => true,
			'POSTBAG_AWS_ACCESS_KEY_ID'     => self::ACCESS_KEY_ID,
			'POSTBAG_AWS_SECRET_ACCESS_KEY' => self::SECRET_ACCESS_KEY,
			'POSTBAG_SPOOL_DIR'             => $spool_dir,
		);
	}

	/** @var array<int, self> Servers not yet stopped, by PID. */
	private static $running = array();

	/**
	 * A stand-in someone else started and will stop (make demo's): stop() leaves it running.
	 *
	 * @param string $endpoint e.g. http://127.0.0.1:40123.
	 */
	public static function attached( string $endpoint ): self {
		$aws           = ( new ReflectionClass( self::class ) )->newInstanceWithoutConstructor();
		$aws->endpoint = $endpoint;
		$aws->pid      = 0;
		return $aws;
	}

	public function __construct( bool $check_signatures = false ) {
		$command = array( Postbag_Test_Python::binary(), '-m', 'standin.aws' );
		if ( $check_signatures ) {
			$command[] = '--check-signatures';
		}
		$log           = tempnam( sys_get_temp_dir(), 'postbag-moto-' );
		$this->wrapper = new Postbag_Test_Process( $command, $log, Postbag_Test_Python::environment(), true );
		$line          = $this->wrapper->read_line( 60 );
		if ( null === $line || ! preg_match( '~^(http://127\.0\.0\.1:\d+) (\d+)$~', $line, $match ) ) {
			$this->wrapper->stop();
			$error = (string) file_get_contents( $log );
			unlink( $log );
			throw new RuntimeException( 'moto server did not start: ' . ( $line ?? '' ) . ' ' . $error );
		}
		unlink( $log );
		$this->endpoint             = $match[1];
		$this->pid                  = (int) $match[2];
		self::$running[ $this->pid ] = $this;
	}

	/**
	 * Stops moto's server by its PID, then lets the wrapper exit.
	 */
	public function stop(): void {
		if ( null === $this->wrapper ) {
			return;
		}
		posix_kill( $this->pid, SIGTERM );
		$deadline = microtime( true ) + 10;
		while ( posix_kill( $this->pid, 0 ) && microtime( true ) < $deadline ) {
			usleep( 20000 );
		}
		if ( posix_kill( $this->pid, 0 ) ) {
			posix_kill( $this->pid, SIGKILL );
		}
		// The wrapper notices its child is gone, or stops on SIGTERM.
		$this->wrapper->stop();
		$this->wrapper = null;
		unset( self::$running[ $this->pid ] );
	}

	public static function stop_all(): void {
		foreach ( self::$running as $server ) {
			$server->stop();
		}
	}

	/**
	 * Runs tests/php/support/s3.py against this server (create a bucket, list
	 * or fetch objects); returns its decoded JSON answer.
	 *
	 * @param string[] $args
	 * @return mixed
	 */
	public function s3( array $args ) {
		return Postbag_Test_Python::run(
			array_merge( array( __DIR__ . '/s3.py', $this->endpoint ), $args ),
			array(
				'AWS_ACCESS_KEY_ID'     => self::ACCESS_KEY_ID,
				'AWS_SECRET_ACCESS_KEY' => self::SECRET_ACCESS_KEY,
				'AWS_DEFAULT_REGION'    => self::REGION,
			)
		);
	}
}
