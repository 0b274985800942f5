<?php
/**
 * A forward HTTP proxy on 127.0.0.1 (tiny-proxy.py), started by a test and
 * stopped by its PID.
 *
 * @package Postbag\Tests
 */

/**
 * Logs each request it forwards; answers 407 without the expected
 * credentials ('' accepts any request).
 */
final class Postbag_Test_Proxy {

	/** @var int */
	public $port;

	/** @var Postbag_Test_Process|null */
	private $process;

	/** @var string */
	private $log;

	/**
	 * @param string $auth Expected 'user:password', or '' for none.
	 * @throws RuntimeException When it does not start.
	 */
	public function __construct( string $auth = '' ) {
		$this->log     = (string) tempnam( sys_get_temp_dir(), 'postbag-proxy-log-' );
		$this->process = new Postbag_Test_Process( array( Postbag_Test_Python::binary(), __DIR__ . '/tiny-proxy.py', $this->log, $auth ), '/dev/null', null, true );
		$this->port    = (int) $this->process->read_line( 10 );
		if ( $this->port < 1 ) {
			$this->stop();
			throw new RuntimeException( 'tiny-proxy.py did not start' );
		}
	}

	/**
	 * Requests forwarded or refused so far, oldest first.
	 *
	 * @return array<int, array{method: string, url: string, proxy_authorization: string}>
	 */
	public function requests(): array {
		return array_map(
			static function ( string $line ): array {
				return json_decode( $line, true );
			},
			array_values( array_filter( explode( "\n", (string) @file_get_contents( $this->log ) ) ) ) // phpcs:ignore WordPress.PHP.NoSilencedErrors -- gone after stop().
		);
	}

	public function stop(): void {
		if ( null !== $this->process ) {
			$this->process->stop();
			$this->process = null;
		}
		if ( is_file( $this->log ) ) {
			unlink( $this->log );
		}
	}
}
