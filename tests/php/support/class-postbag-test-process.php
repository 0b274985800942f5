<?php
/**
 * A child process started without a shell and stopped by its PID.
 *
 * @package Postbag\Tests
 */

/**
 * Wraps proc_open() so every server the tests start (MariaDB, moto) is
 * stopped the same way: SIGTERM, a bounded wait, then SIGKILL.
 */
final class Postbag_Test_Process {

	/** @var resource|null */
	private $handle;

	/** @var array<int, resource> */
	private $pipes;

	/** @var int */
	public $pid;

	/**
	 * @param string[]                $command Program and arguments (no shell).
	 * @param string                  $log     File that receives stdout (unless piped) and stderr.
	 * @param array<string,string>|null $env   Environment; null inherits ours.
	 * @param bool                    $pipe_stdout Read stdout through read_line().
	 */
	public function __construct( array $command, string $log, ?array $env = null, bool $pipe_stdout = false ) {
		$spec         = array(
			0 => array( 'file', '/dev/null', 'r' ),
			1 => $pipe_stdout ? array( 'pipe', 'w' ) : array( 'file', $log, 'a' ),
			2 => array( 'file', $log, 'a' ),
		);
		$this->handle = proc_open( $command, $spec, $this->pipes, null, $env );
		if ( ! is_resource( $this->handle ) ) {
			throw new RuntimeException( 'Could not start ' . implode( ' ', $command ) );
		}
		$this->pid = proc_get_status( $this->handle )['pid'];
	}

	public function is_running(): bool {
		return null !== $this->handle && proc_get_status( $this->handle )['running'];
	}

	/**
	 * One line of the child's stdout, or null if none came within the timeout.
	 */
	public function read_line( float $timeout ): ?string {
		$stream   = $this->pipes[1];
		$deadline = microtime( true ) + $timeout;
		$line     = '';
		while ( microtime( true ) < $deadline ) {
			$read   = array( $stream );
			$write  = null;
			$except = null;
			$left   = max( 0.0, $deadline - microtime( true ) );
			if ( false === stream_select( $read, $write, $except, (int) $left, (int) ( fmod( $left, 1.0 ) * 1e6 ) ) ) {
				return null;
			}
			if ( ! $read ) {
				continue;
			}
			$chunk = fgets( $stream );
			if ( false === $chunk ) {
				return null; // The child closed stdout (it exited).
			}
			$line .= $chunk;
			if ( "\n" === substr( $line, -1 ) ) {
				return rtrim( $line, "\n" );
			}
		}
		return null;
	}

	/**
	 * Stops the child (SIGTERM, then SIGKILL after the grace period) and reaps it.
	 */
	public function stop( float $grace = 10.0 ): void {
		if ( null === $this->handle ) {
			return;
		}
		if ( $this->is_running() ) {
			posix_kill( $this->pid, SIGTERM );
		}
		$deadline = microtime( true ) + $grace;
		while ( $this->is_running() && microtime( true ) < $deadline ) {
			usleep( 20000 );
		}
		if ( $this->is_running() ) {
			posix_kill( $this->pid, SIGKILL );
		}
		foreach ( $this->pipes as $pipe ) {
			fclose( $pipe );
		}
		proc_close( $this->handle );
		$this->handle = null;
	}

	/**
	 * Waits for the child to exit by itself; returns its exit code.
	 */
	public function wait( float $timeout ): int {
		$deadline = microtime( true ) + $timeout;
		while ( microtime( true ) < $deadline ) {
			$status = proc_get_status( $this->handle );
			if ( ! $status['running'] ) {
				foreach ( $this->pipes as $pipe ) {
					fclose( $pipe );
				}
				proc_close( $this->handle );
				$this->handle = null;
				return $status['exitcode'];
			}
			usleep( 10000 );
		}
		$this->stop();
		throw new RuntimeException( "Process {$this->pid} did not finish within {$timeout}s" );
	}

	/**
	 * A TCP port on 127.0.0.1 nothing listens on: one the kernel just gave us,
	 * closed again (for a server to start on, or to be refused by).
	 */
	public static function free_port(): int {
		$socket = stream_socket_server( 'tcp://127.0.0.1:0', $errno, $errstr );
		if ( false === $socket ) {
			throw new RuntimeException( "Could not reserve a port: $errstr" );
		}
		$address = (string) stream_socket_get_name( $socket, false );
		fclose( $socket );
		return (int) substr( $address, strrpos( $address, ':' ) + 1 );
	}
}
