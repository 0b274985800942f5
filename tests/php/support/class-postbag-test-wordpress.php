<?php
/**
 * Boots Debian's WordPress against a throwaway MariaDB, with the plugin active.
 *
 * @package Postbag\Tests
 */

/**
 * One WordPress for the whole run: a sandbox, MariaDB on a socket, a
 * generated wp-config.php, a headless install in a child PHP process (so this
 * process loads WordPress the normal way, plugins and all), then
 * wp-settings.php. Everything is stopped and removed when PHP shuts down.
 */
final class Postbag_Test_WordPress {

	const SITE_URL    = 'http://blog.example.org';
	const PLUGIN      = 'postbag/postbag.php';
	const ADMIN_EMAIL = 'admin@example.org';

	/** @var Postbag_Test_Sandbox */
	public static $sandbox;

	/** @var Postbag_Test_MariaDB|null */
	private static $database;

	/** @var string Why the plugin is not active, or '' when it is. */
	public static $plugin_problem = '';

	/**
	 * Starts MariaDB, writes wp-config.php and installs WordPress. The caller
	 * then requires the returned config and wp-settings.php from global scope,
	 * where WordPress expects its globals (see boot.php), and calls loaded().
	 *
	 * @return string Path of the generated wp-config.php.
	 */
	public static function prepare(): string {
		self::exit_on_signals();
		self::$sandbox = new Postbag_Test_Sandbox();
		// Before anything starts, so a failing step below still cleans up.
		register_shutdown_function( array( __CLASS__, 'cleanup' ) );

		self::$database = new Postbag_Test_MariaDB( self::$sandbox );
		self::$database->create_database( 'wordpress' );

		$config = self::write_config();
		self::install( $config );
		$_SERVER['HTTP_HOST']   = (string) parse_url( self::SITE_URL, PHP_URL_HOST );
		$_SERVER['SERVER_NAME'] = $_SERVER['HTTP_HOST'];
		$_SERVER['REQUEST_URI'] = '/';
		$_SERVER['REMOTE_ADDR'] = '127.0.0.1';
		return $config;
	}

	/**
	 * Runs once WordPress is loaded: checks the plugin is active and replaces
	 * PHPMailer with the recording one, so no test mail leaves the process.
	 */
	public static function loaded(): void {
		self::load_requests_quietly();
		if ( '' === self::$plugin_problem && ! in_array( self::PLUGIN, (array) get_option( 'active_plugins' ), true ) ) {
			self::$plugin_problem = 'the plugin is not active after install';
		}
		Postbag_Test_Mailer::install();
	}

	/**
	 * WordPress 6.1 bundles Requests 1.8.1, whose classes PHP 8.2 flags as
	 * deprecated when they are compiled; with deprecations turned into
	 * exceptions the first HTTP call would abort a test. Compile them all once,
	 * with only those notices muted.
	 */
	public static function load_requests_quietly(): void {
		$base     = ABSPATH . WPINC . '/Requests/';
		$previous = error_reporting( error_reporting() & ~E_DEPRECATED );
		try {
			$files = new RecursiveIteratorIterator( new RecursiveDirectoryIterator( $base, FilesystemIterator::SKIP_DOTS ) );
			foreach ( $files as $file ) {
				// Requests' own autoloader maps Requests_Foo_Bar to Requests/Foo/Bar.php.
				class_exists( 'Requests_' . str_replace( '/', '_', substr( $file->getPathname(), strlen( $base ), -4 ) ) );
			}
		} finally {
			error_reporting( $previous );
		}
	}

	/**
	 * A WordPress network (multisite, sub-directories) next to the test site:
	 * its own database on the same MariaDB, a second site at /second/, the
	 * plugin network-activated. Made on first use, for child processes only
	 * (this process stays a single site).
	 *
	 * @return array{constants: string, second_site: string} File of the network's
	 *         constants, to require before the shared wp-config.php; the second site's URL.
	 */
	public static function network(): array {
		static $network = null;
		if ( null === $network ) {
			self::$database->create_database( 'wordpress_network' );
			$constants = self::$sandbox->path( 'network.php' );
			$php       = "<?php\n// The test network: its own database, sub-directory sites.\ndefine( 'DB_NAME', 'wordpress_network' );\n"
				// Any of these makes is_multisite() true, which the installer must not see yet.
				. "if ( ! defined( 'WP_INSTALLING' ) ) {\n";
			foreach (
				array(
					'MULTISITE'            => true,
					'SUBDOMAIN_INSTALL'    => false,
					'DOMAIN_CURRENT_SITE'  => (string) parse_url( self::SITE_URL, PHP_URL_HOST ),
					'PATH_CURRENT_SITE'    => '/',
					'SITE_ID_CURRENT_SITE' => 1,
					'BLOG_ID_CURRENT_SITE' => 1,
				) as $name => $value
			) {
				$php .= sprintf( "\tdefine( '%s', %s );\n", $name, var_export( $value, true ) );
			}
			file_put_contents( $constants, $php . "}\n" );
			$second = '';
			foreach ( array( 'install', 'sites' ) as $phase ) {
				$log     = self::$sandbox->path( "network-$phase.log" );
				$install = new Postbag_Test_Process(
					array( PHP_BINARY, '-d', 'display_errors=stderr', __DIR__ . '/install-network.php', self::$sandbox->path( 'wp-config.php' ), $constants, $phase ),
					$log,
					null,
					true
				);
				// WP_DEBUG shows notices on stdout too, and wp_die() exits with
				// status 0: the last line printed says whether the phase got through.
				$printed = '';
				while ( null !== ( $line = $install->read_line( 120 ) ) ) {
					$printed = '' === $line ? $printed : $line;
				}
				if ( 0 !== $install->wait( 120 ) || ! preg_match( '~^done( (http://\S+))?$~', $printed, $match ) ) {
					throw new RuntimeException( "Network $phase failed: $printed " . file_get_contents( $log ) );
				}
				$second = $match[2] ?? $second;
			}
			$network = array(
				'constants'   => $constants,
				'second_site' => $second,
			);
		}
		return $network;
	}

	/**
	 * For tests that need the plugin: the reason it is missing, for a clear failure.
	 */
	public static function require_plugin(): void {
		if ( '' !== self::$plugin_problem ) {
			throw new RuntimeException( 'Postbag plugin not loaded: ' . self::$plugin_problem );
		}
	}

	private static function write_config(): string {
		$sandbox = self::$sandbox;
		$content = $sandbox->path( 'wp-content', true );
		$sandbox->path( 'wp-content/plugins', true );
		symlink( dirname( __DIR__, 3 ) . '/wp-plugin', $content . '/plugins/postbag' );
		symlink( '/usr/share/wordpress/wp-content/themes', $content . '/themes' );
		symlink( __DIR__ . '/mu-plugins', $content . '/mu-plugins' );

		$constants = array(
			'DB_NAME'                    => 'wordpress',
			'DB_USER'                    => 'root',
			'DB_PASSWORD'                => '',
			'DB_HOST'                    => 'localhost:' . self::$database->socket,
			'DB_CHARSET'                 => 'utf8mb4',
			'DB_COLLATE'                 => '',
			'ABSPATH'                    => '/usr/share/wordpress/',
			'WP_CONTENT_DIR'             => $content,
			'WP_HOME'                    => self::SITE_URL,
			'WP_SITEURL'                 => self::SITE_URL,
			'WP_DEBUG'                   => true,
			'WP_DEBUG_LOG'               => false,
			// No loopback request to wp-cron.php: tests run cron hooks themselves.
			'DISABLE_WP_CRON'            => true,
			'AUTOMATIC_UPDATER_DISABLED' => true,
			'WP_AUTO_UPDATE_CORE'        => false,
			// The WordPress HTTP API may reach local servers only.
			'WP_HTTP_BLOCK_EXTERNAL'     => true,
			'WP_ACCESSIBLE_HOSTS'        => '127.0.0.1',
			'POSTBAG_SPOOL_DIR'          => $sandbox->path( 'spool' ),
		);
		foreach ( array( 'AUTH', 'SECURE_AUTH', 'LOGGED_IN', 'NONCE' ) as $scheme ) {
			$constants[ $scheme . '_KEY' ]  = bin2hex( random_bytes( 32 ) );
			$constants[ $scheme . '_SALT' ] = bin2hex( random_bytes( 32 ) );
		}

		$php = "<?php\n// Generated by tests/php/support for one test run.\n";
		foreach ( $constants as $name => $value ) {
			$php .= sprintf( "if ( ! defined( '%s' ) ) {\n\tdefine( '%s', %s );\n}\n", $name, $name, var_export( $value, true ) );
		}
		$php .= "\$table_prefix = 'wp_';\n";

		$file = $sandbox->path( 'wp-config.php' );
		file_put_contents( $file, $php );
		return $file;
	}

	/**
	 * Installs WordPress and activates the plugin in a child PHP process,
	 * which needs WP_INSTALLING; this process then loads a normal site.
	 */
	private static function install( string $config ): void {
		$log     = self::$sandbox->path( 'install.log' );
		$install = new Postbag_Test_Process(
			array( PHP_BINARY, '-d', 'display_errors=stderr', __DIR__ . '/install-wordpress.php', $config, self::SITE_URL, self::ADMIN_EMAIL, self::PLUGIN ),
			$log
		);
		$status  = $install->wait( 120 );
		$output  = trim( (string) file_get_contents( $log ) );
		if ( 0 !== $status && 3 !== $status ) {
			throw new RuntimeException( "WordPress install failed ($status): $output" );
		}
		if ( 3 === $status ) {
			// The plugin could not be activated (e.g. classes still being written):
			// WordPress runs without it so other suites still work.
			self::$plugin_problem = $output;
			fwrite( STDERR, "Postbag test harness: plugin not active: $output\n" );
		}
	}

	/**
	 * Blocks until stdin closes: how a caller stops a launcher (standin/wordpress-site.php,
	 * tests/browser/launch-site.php). A signal ends the wait too, through exit_on_signals():
	 * select() returns on one, where PHP's fgets() reads again after an interrupted read
	 * (one TERM was not enough).
	 */
	public static function wait_for_stdin_to_close(): void {
		do {
			$ready = array( STDIN );
			$none  = null;
			$count = @stream_select( $ready, $none, $none, null ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- a signal makes it warn and return false; the handler exits next.
		} while ( false === $count || false !== fgets( STDIN ) );
	}

	/**
	 * Ctrl-C or a TERM signal ends the run through exit(), so the shutdown
	 * functions still stop the servers. The interrupted system call is not
	 * restarted, so that a blocking call returns to let the handler run.
	 */
	private static function exit_on_signals(): void {
		if ( ! function_exists( 'pcntl_async_signals' ) ) {
			return;
		}
		pcntl_async_signals( true );
		foreach ( array( SIGINT, SIGTERM, SIGHUP ) as $signal ) {
			pcntl_signal(
				$signal,
				static function (): void {
					exit( 130 );
				},
				false
			);
		}
	}

	/**
	 * Stops MariaDB and removes the sandbox. Shutdown functions run in the order
	 * registered, and WordPress registers its `shutdown` action after us, so we
	 * re-register to run last.
	 */
	public static function cleanup( bool $last = false ): void {
		if ( ! $last ) {
			register_shutdown_function( array( __CLASS__, 'cleanup' ), true );
			return;
		}
		Postbag_Test_Local_Aws::stop_all();
		if ( null !== self::$database ) {
			self::$database->stop();
			self::$database = null;
		}
		if ( null !== self::$sandbox ) {
			self::$sandbox->remove();
		}
	}
}
