<?php
/**
 * nginx on 127.0.0.1 in front of the harness's PHP-FPM, and an HTTP client for it.
 *
 * @package Postbag\Tests
 */

/**
 * The way a production WordPress is served: nginx with Debian's
 * `fastcgi_params`, Debian's WordPress as the document root, PHP through
 * FastCGI to PHP-FPM's socket, and FastCGI buffering left on as on a normal
 * site (nginx answers the client once PHP ends the response, which
 * fastcgi_finish_request() does before the plugin's shutdown work). Pages of
 * the tests are served under /postbag-test/<name>.php from `$pages`, with
 * fixed FastCGI parameters (the generated wp-config.php, the site's
 * constants). Config, logs and temporary files live in the sandbox; stopped
 * by PID.
 */
final class Postbag_Test_Nginx {

	/** The URL path the test pages are served under. */
	const PAGES_PATH = '/postbag-test/';

	/** @var string e.g. http://127.0.0.1:40123 */
	public $url;

	/** @var string nginx's error log. */
	public $log;

	/** @var Postbag_Test_Process|null */
	private $process;

	/**
	 * The nginx binary, or null when it is not installed (Debian package nginx).
	 */
	public static function binary(): ?string {
		return is_executable( '/usr/sbin/nginx' ) ? '/usr/sbin/nginx' : null;
	}

	/**
	 * @param Postbag_Test_Sandbox  $sandbox Where the config, logs and temporary files go.
	 * @param Postbag_Test_Php_Fpm  $fpm     PHP-FPM to pass PHP requests to.
	 * @param string                $pages   Directory of the pages served under PAGES_PATH.
	 * @param array<string, string> $params  FastCGI parameters for those pages ($_SERVER entries).
	 * @param string                $root    Document root: Debian's WordPress, or a tree that serves
	 *                                       wp-admin with a wp-config.php of its own (tests/browser).
	 */
	public function __construct( Postbag_Test_Sandbox $sandbox, Postbag_Test_Php_Fpm $fpm, string $pages, array $params, string $root = '/usr/share/wordpress' ) {
		$binary = self::binary();
		if ( null === $binary ) {
			throw new RuntimeException( 'nginx is not installed (Debian package nginx).' );
		}
		$dir       = $sandbox->path( 'nginx-' . bin2hex( random_bytes( 4 ) ), true );
		$this->log = $dir . '/error.log';
		$port      = Postbag_Test_Process::free_port();
		$this->url = "http://127.0.0.1:$port";
		$config    = $dir . '/nginx.conf';
		file_put_contents( $config, self::config( $dir, $port, $fpm->socket, $pages, $params, $root ) );
		// -e: the error log before the config is read (else /var/log/nginx, which may not be writable).
		$this->process = new Postbag_Test_Process( array( $binary, '-p', $dir, '-c', $config, '-e', $this->log ), $this->log );
		$this->wait_ready( $port, 30 );
	}

	/**
	 * @param string                $dir    nginx's directory in the sandbox.
	 * @param int                   $port   Port on 127.0.0.1.
	 * @param string                $socket PHP-FPM's socket.
	 * @param string                $pages  Directory of the test pages.
	 * @param array<string, string> $params FastCGI parameters for the test pages.
	 * @param string                $root   Document root.
	 */
	private static function config( string $dir, int $port, string $socket, string $pages, array $params, string $root ): string {
		$page_params = '';
		foreach ( $params as $name => $value ) {
			$page_params .= "\t\t\tfastcgi_param $name " . self::quote( $value ) . ";\n";
		}
		foreach ( array( 'body', 'fastcgi', 'proxy', 'scgi', 'uwsgi' ) as $kind ) {
			mkdir( "$dir/$kind", 0700 );
		}
		// Workers of a root master run as nobody, who could not reach PHP-FPM's socket.
		$user   = 0 === posix_geteuid() ? 'user root root;' : '';
		// The directory, then the page's name from the location's regex, in one string.
		$script = substr( self::quote( rtrim( $pages, '/' ) . '/' ), 0, -1 ) . '$1"';
		$prefix = preg_quote( self::PAGES_PATH, '~' );
		return <<<CONF
daemon off;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
$user
events {
	worker_connections 256;
}
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log $dir/access.log;
	sendfile on;
	keepalive_timeout 65;
	client_body_temp_path $dir/body;
	fastcgi_temp_path $dir/fastcgi;
	proxy_temp_path $dir/proxy;
	scgi_temp_path $dir/scgi;
	uwsgi_temp_path $dir/uwsgi;
	server {
		listen 127.0.0.1:$port;
		server_name blog.example.org;
		root $root;
		index index.php;
		location ~ ^{$prefix}([a-z0-9-]+\.php)$ {
			include /etc/nginx/fastcgi_params;
			fastcgi_param SCRIPT_FILENAME $script;
$page_params			fastcgi_pass unix:$socket;
		}
		location / {
			try_files \$uri \$uri/ /index.php?\$args;
		}
		location ~ \.php$ {
			try_files \$uri =404;
			include /etc/nginx/fastcgi_params;
			fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
			fastcgi_pass unix:$socket;
		}
	}
}

CONF;
	}

	/**
	 * A value as an nginx string. nginx expands `$name` in any string, quoted
	 * or not, with no escape for it: such values are refused.
	 */
	private static function quote( string $value ): string {
		if ( false !== strpos( $value, '$' ) ) {
			throw new InvalidArgumentException( "nginx cannot pass a value holding '\$' verbatim: $value" );
		}
		return '"' . addcslashes( $value, '"\\' ) . '"';
	}

	private function wait_ready( int $port, float $timeout ): void {
		$deadline = microtime( true ) + $timeout;
		while ( $this->process->is_running() && microtime( true ) < $deadline ) {
			$client = @stream_socket_client( "tcp://127.0.0.1:$port", $errno, $errstr, 1 ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- refused until nginx listens.
			if ( false !== $client ) {
				fclose( $client );
				return;
			}
			usleep( 20000 );
		}
		$this->stop();
		throw new RuntimeException( 'nginx did not start: ' . @file_get_contents( $this->log ) ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- the log may not exist.
	}

	/**
	 * GETs a page as a browser asking for blog.example.org would, timed by curl.
	 *
	 * @param string $path    URL path and query, e.g. /postbag-test/page.php?n=1.
	 * @param float  $timeout Seconds to wait for the whole response.
	 * @return array{status: int, body: string, ttfb: float, total: float, ended_at: float, error: string}
	 *         HTTP status (0 when none came), body, seconds to the first byte
	 *         and to the end of the response, microtime(true) when it ended, curl's error.
	 */
	public function get( string $path, float $timeout ): array {
		$curl = curl_init( $this->url . $path );
		curl_setopt_array(
			$curl,
			array(
				CURLOPT_RETURNTRANSFER => true,
				CURLOPT_HTTPHEADER     => array( 'Host: blog.example.org' ),
				CURLOPT_TIMEOUT_MS     => (int) ( $timeout * 1000 ),
				CURLOPT_PROXY          => '', // Never an environment's proxy: the request stays on 127.0.0.1.
				CURLOPT_NOPROXY        => '*',
			)
		);
		$body  = curl_exec( $curl );
		$ended = microtime( true );
		$info  = curl_getinfo( $curl );
		$error = curl_error( $curl );
		curl_close( $curl );
		return array(
			'status'   => (int) $info['http_code'],
			'body'     => is_string( $body ) ? $body : '',
			'ttfb'     => (float) $info['starttransfer_time'],
			'total'    => (float) $info['total_time'],
			'ended_at' => $ended,
			'error'    => $error,
		);
	}

	/**
	 * Stops nginx (SIGTERM: a fast shutdown) by PID.
	 */
	public function stop(): void {
		if ( null !== $this->process ) {
			$this->process->stop( 30 );
			$this->process = null;
		}
	}
}
