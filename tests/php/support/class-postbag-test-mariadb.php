<?php
/**
 * A throwaway MariaDB server on a UNIX socket in the sandbox.
 *
 * @package Postbag\Tests
 */

/**
 * Installs a fresh data directory and runs `mariadbd --skip-networking` on a
 * socket; stopped by PID. Starting takes well under a second.
 */
final class Postbag_Test_MariaDB {

	/** @var string */
	public $socket;

	/** @var Postbag_Test_Process|null */
	private $process;

	/** @var string */
	private $log;

	public function __construct( Postbag_Test_Sandbox $sandbox ) {
		$dir          = $sandbox->path( 'mariadb', true );
		$this->socket = $dir . '/mysqld.sock';
		$this->log    = $dir . '/server.log';
		$datadir      = $dir . '/data';
		// Running as root (CI) needs --user=root; elsewhere it is ignored.
		$user = 0 === posix_geteuid() ? array( '--user=root' ) : array();

		$install = new Postbag_Test_Process(
			array_merge(
				array( 'mariadb-install-db', '--no-defaults', '--datadir=' . $datadir, '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve' ),
				$user
			),
			$dir . '/install.log'
		);
		if ( 0 !== $install->wait( 60 ) ) {
			throw new RuntimeException( 'mariadb-install-db failed: ' . file_get_contents( $dir . '/install.log' ) );
		}

		$this->process = new Postbag_Test_Process(
			array_merge(
				array(
					self::server_binary(),
					'--no-defaults',
					'--datadir=' . $datadir,
					'--socket=' . $this->socket,
					'--pid-file=' . $dir . '/mysqld.pid',
					// Its temporary tables and sort files too: another program cleaning /tmp cannot pull them away.
					'--tmpdir=' . $sandbox->path( 'mariadb/tmp', true ),
					'--skip-networking',
					'--skip-log-bin',
					'--innodb-buffer-pool-size=16M',
					'--log-error=' . $this->log,
				),
				$user
			),
			$this->log
		);
		$this->wait_ready( 30 );
	}

	private static function server_binary(): string {
		foreach ( array( '/usr/sbin/mariadbd', '/usr/sbin/mysqld' ) as $binary ) {
			if ( is_executable( $binary ) ) {
				return $binary;
			}
		}
		return 'mariadbd';
	}

	private function wait_ready( float $timeout ): void {
		$deadline = microtime( true ) + $timeout;
		while ( microtime( true ) < $deadline ) {
			if ( ! $this->process->is_running() ) {
				break;
			}
			// The socket appears a moment before connections are accepted on it (a busy
			// machine showed "Connection refused" in create_database()).
			if ( file_exists( $this->socket ) && $this->accepts_connections() ) {
				return;
			}
			usleep( 20000 );
		}
		$this->stop();
		throw new RuntimeException( 'MariaDB did not start: ' . @file_get_contents( $this->log ) ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- the log may not exist.
	}

	private function accepts_connections(): bool {
		try {
			( new mysqli( null, 'root', '', '', 0, $this->socket ) )->close();
			return true;
		} catch ( mysqli_sql_exception $e ) {
			return false;
		}
	}

	/**
	 * Creates a database (utf8mb4, like WordPress expects).
	 */
	public function create_database( string $name ): void {
		$db = new mysqli( null, 'root', '', '', 0, $this->socket );
		$db->query( sprintf( 'CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci', $db->real_escape_string( $name ) ) );
		$db->close();
	}

	public function stop(): void {
		if ( null !== $this->process ) {
			$this->process->stop( 30 );
			$this->process = null;
		}
	}
}
