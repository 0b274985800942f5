<?php
/**
 * PHP-FPM on a UNIX socket in the sandbox, and a FastCGI client for it.
 *
 * @package Postbag\Tests
 */

/**
 * The way a production site runs PHP: requests come in over FastCGI, and
 * fastcgi_finish_request() ends one for the client while the script goes on.
 * Stopped by PID.
 */
final class Postbag_Test_Php_Fpm {

	const BEGIN_REQUEST = 1;
	const END_REQUEST   = 3;
	const PARAMS        = 4;
	const STDIN         = 5;
	const STDOUT        = 6;
	const STDERR        = 7;
	const RESPONDER     = 1;

	/** @var string */
	public $socket;

	/** @var string */
	public $log;

	/** @var Postbag_Test_Process|null */
	private $process;

	/**
	 * The php-fpm binary, or null when it is not installed (Debian's php-fpm package).
	 */
	public static function binary(): ?string {
		$found = glob( '/usr/sbin/php-fpm' . PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION ) ?: glob( '/usr/sbin/php-fpm*' );
		return $found ? $found[0] : null;
	}

	/**
	 * @param Postbag_Test_Sandbox $sandbox Where the socket, config and logs go.
	 * @param string[]             $pool    More lines for the pool section, e.g.
	 *                                      `php_admin_value[memory_limit] = 128M`.
	 */
	public function __construct( Postbag_Test_Sandbox $sandbox, array $pool = array() ) {
		$binary = self::binary();
		if ( null === $binary ) {
			throw new RuntimeException( 'php-fpm is not installed (Debian package php-fpm).' );
		}
		$dir          = $sandbox->path( 'php-fpm', true );
		$this->socket = $dir . '/php-fpm.sock';
		$this->log    = $dir . '/php-fpm.log';
		$root         = 0 === posix_geteuid();
		$config       = $dir . '/php-fpm.conf';
		file_put_contents(
			$config,
			implode(
				"\n",
				array(
					'[global]',
					"pid = $dir/php-fpm.pid",
					"error_log = {$this->log}",
					'daemonize = no',
					'[postbag]',
					"listen = {$this->socket}",
					$root ? "user = root\ngroup = root" : '',
					'pm = static',
					'pm.max_children = 2',
					'clear_env = no',
					'catch_workers_output = yes',
					'php_admin_flag[log_errors] = on',
					"php_admin_value[error_log] = $dir/php-errors.log",
					implode( "\n", $pool ),
					'',
				)
			)
		);
		$command       = array_merge( array( $binary, '--nodaemonize', '--fpm-config', $config ), $root ? array( '--allow-to-run-as-root' ) : array() );
		$this->process = new Postbag_Test_Process( $command, $this->log );
		$deadline      = microtime( true ) + 30;
		while ( ! file_exists( $this->socket ) ) {
			if ( ! $this->process->is_running() || microtime( true ) > $deadline ) {
				$this->stop();
				throw new RuntimeException( 'php-fpm did not start: ' . @file_get_contents( $this->log ) ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- the log may not exist.
			}
			usleep( 20000 );
		}
	}

	/**
	 * Runs `$script` as a GET request and reads the response.
	 *
	 * @param string                $script  Absolute path of the PHP file.
	 * @param array<string, string> $params  Extra FastCGI parameters ($_SERVER entries).
	 * @param float                 $timeout Seconds to wait for the end of the response.
	 * @return array{stdout: string, stderr: string, seconds: float} Response and when it ended.
	 */
	public function request( string $script, array $params, float $timeout ): array {
		$start  = microtime( true );
		$client = stream_socket_client( 'unix://' . $this->socket, $errno, $errstr, $timeout );
		if ( false === $client ) {
			throw new RuntimeException( "Cannot reach php-fpm: $errstr" );
		}
		stream_set_timeout( $client, (int) ceil( $timeout ) );
		$params += array(
			'GATEWAY_INTERFACE' => 'FastCGI/1.0',
			'REQUEST_METHOD'    => 'GET',
			'SCRIPT_FILENAME'   => $script,
			'SCRIPT_NAME'       => '/' . basename( $script ),
			'REQUEST_URI'       => '/' . basename( $script ),
			'QUERY_STRING'      => '',
			'SERVER_PROTOCOL'   => 'HTTP/1.1',
			'SERVER_NAME'       => 'blog.example.org',
			'SERVER_PORT'       => '80',
			'HTTP_HOST'         => 'blog.example.org',
			'REMOTE_ADDR'       => '127.0.0.1',
		);
		$pairs = '';
		foreach ( $params as $name => $value ) {
			$pairs .= self::length( strlen( $name ) ) . self::length( strlen( $value ) ) . $name . $value;
		}
		fwrite(
			$client,
			self::record( self::BEGIN_REQUEST, pack( 'nCx5', self::RESPONDER, 0 ) )
			. self::record( self::PARAMS, $pairs ) . self::record( self::PARAMS, '' )
			. self::record( self::STDIN, '' )
		);
		$out = array(
			self::STDOUT => '',
			self::STDERR => '',
		);
		while ( true ) {
			$header = self::read( $client, 8 );
			$record = unpack( 'Cversion/Ctype/nid/nlength/Cpadding', $header );
			$body   = self::read( $client, $record['length'] + $record['padding'] );
			if ( self::END_REQUEST === $record['type'] ) {
				break;
			}
			if ( isset( $out[ $record['type'] ] ) ) {
				$out[ $record['type'] ] .= substr( $body, 0, $record['length'] );
			}
		}
		$seconds = microtime( true ) - $start;
		fclose( $client );
		return array(
			'stdout'  => $out[ self::STDOUT ],
			'stderr'  => $out[ self::STDERR ],
			'seconds' => $seconds,
		);
	}

	private static function record( int $type, string $content ): string {
		return pack( 'CCnnCx', 1, $type, 1, strlen( $content ), 0 ) . $content;
	}

	private static function length( int $length ): string {
		return $length < 128 ? chr( $length ) : pack( 'N', $length | 0x80000000 );
	}

	/**
	 * Exactly `$bytes` bytes from the connection.
	 *
	 * @param resource $client Connection.
	 */
	private static function read( $client, int $bytes ): string {
		$data = '';
		while ( strlen( $data ) < $bytes ) {
			$chunk = fread( $client, $bytes - strlen( $data ) );
			if ( false === $chunk || ( '' === $chunk && ( feof( $client ) || stream_get_meta_data( $client )['timed_out'] ) ) ) {
				throw new RuntimeException( 'php-fpm closed the connection or timed out mid-response' );
			}
			$data .= $chunk;
		}
		return $data;
	}

	/**
	 * Stops php-fpm; on SIGTERM the master ends its workers at once.
	 */
	public function stop(): void {
		if ( null !== $this->process ) {
			$this->process->stop( 30 );
			$this->process = null;
		}
	}
}
