<?php
/**
 * Starts a real WordPress for the browser tests and prints how to reach it.
 *
 *   php tests/browser/launch-site.php
 *   -> one JSON line: {"url", "host", "user", "password", "endpoint", "bucket",
 *      "db_socket", "php_errors", "pids": {...}}
 *   then serves until its stdin closes or it gets SIGTERM, and stops
 *   everything it started by PID (MariaDB, the stand-in, PHP-FPM, nginx).
 *
 * The site: Debian's WordPress with the plugin active (the PHP tests'
 * harness, tests/php/support), uploading to a bucket on the local AWS
 * stand-in, served by nginx and PHP-FPM at a free port on 127.0.0.1 under
 * the host name blog.example.org (the browser maps it there). Debian's own
 * wp-config.php only reads /etc/wordpress/: the document root is a tree in
 * the sandbox holding WordPress's entry points (copies: they find
 * wp-load.php next to themselves) and links to the rest, with a
 * wp-config.php that loads the run's generated one.
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' ) {
	exit( 2 );
}

// Loads WordPress into this process too (MariaDB, install, plugin active).
require dirname( __DIR__ ) . '/php/support/boot.php';

/**
 * The document root: entry points copied, everything else linked.
 *
 * @param Postbag_Test_Sandbox $sandbox The run's sandbox.
 * @param string               $config  The generated wp-config.php.
 * @return string The root.
 */
function postbag_browser_root( Postbag_Test_Sandbox $sandbox, string $config ): string {
	$root = $sandbox->path( 'docroot', true );
	foreach ( scandir( ABSPATH ) as $name ) {
		if ( '.' === $name || '..' === $name || 'wp-config.php' === $name || 'wp-content' === $name || 'wp-admin' === $name ) {
			continue;
		}
		if ( '.php' === substr( $name, -4 ) ) {
			copy( ABSPATH . $name, "$root/$name" );
		} else {
			symlink( ABSPATH . $name, "$root/$name" );
		}
	}
	mkdir( "$root/wp-admin" );
	foreach ( scandir( ABSPATH . 'wp-admin' ) as $name ) {
		if ( '.' === $name || '..' === $name ) {
			continue;
		}
		if ( '.php' === substr( $name, -4 ) ) {
			copy( ABSPATH . "wp-admin/$name", "$root/wp-admin/$name" );
		} else {
			symlink( ABSPATH . "wp-admin/$name", "$root/wp-admin/$name" );
		}
	}
	symlink( WP_CONTENT_DIR, "$root/wp-content" );
	file_put_contents( "$root/wp-config.php", "<?php\n// ABSPATH: defined by wp-load.php, next to this file.\nrequire " . var_export( $sandbox->path( 'browser-constants.php' ), true ) . ";\nrequire " . var_export( $config, true ) . ";\nrequire_once ABSPATH . 'wp-settings.php';\n" );
	return $root;
}

$postbag_sandbox  = Postbag_Test_WordPress::$sandbox;
$postbag_aws      = new Postbag_Test_Local_Aws();
$postbag_bucket   = 'postbag-browser';
$postbag_aws->s3( array( 'create-bucket', $postbag_bucket ) );
$postbag_password = wp_generate_password( 20, false );
wp_set_password( $postbag_password, 1 );

// The plugin's settings, as a site's wp-config.php has them; the generated config's own are guarded.
$postbag_constants = Postbag_Test_Local_Aws::site_constants( $postbag_aws->endpoint, $postbag_bucket, $postbag_sandbox->path( 'spool' ) )
	+ array(
		'POSTBAG_FROM'              => 'Postbag Browser Test <news@example.org>',
		// unverified.example: allowed, but not an SES identity until a test verifies it (a failure to resend).
		'POSTBAG_ALLOWED_SENDERS'   => 'example.org, unverified.example',
		'POSTBAG_UPLOAD_TIMEOUT'    => 3,
		'DISABLE_WP_CRON'           => true,
		'WP_DEBUG_DISPLAY'          => true,
	);
$postbag_php = "<?php\n";
foreach ( $postbag_constants as $postbag_name => $postbag_value ) {
	$postbag_php .= sprintf( "define( %s, %s );\n", var_export( $postbag_name, true ), var_export( $postbag_value, true ) );
}
file_put_contents( $postbag_sandbox->path( 'browser-constants.php' ), $postbag_php );
$postbag_root = postbag_browser_root( $postbag_sandbox, $postbag_sandbox->path( 'wp-config.php' ) );

$postbag_fpm   = new Postbag_Test_Php_Fpm( $postbag_sandbox, array( 'php_admin_value[memory_limit] = 128M', 'request_terminate_timeout = 60s' ) );
$postbag_nginx = null;
register_shutdown_function(
	static function () use ( &$postbag_nginx, $postbag_fpm ): void {
		if ( null !== $postbag_nginx ) {
			$postbag_nginx->stop();
		}
		$postbag_fpm->stop();
	}
);
$postbag_nginx = new Postbag_Test_Nginx( $postbag_sandbox, $postbag_fpm, __DIR__ . '/pages', array( 'POSTBAG_TEST_WP_ROOT' => $postbag_root ), $postbag_root );

echo wp_json_encode(
	array(
		'url'        => $postbag_nginx->url,
		'host'       => (string) wp_parse_url( Postbag_Test_WordPress::SITE_URL, PHP_URL_HOST ),
		'user'       => 'admin',
		'password'   => $postbag_password,
		'endpoint'   => $postbag_aws->endpoint,
		'bucket'     => $postbag_bucket,
		'spool'      => $postbag_sandbox->path( 'spool' ),
		'db_socket'  => substr( DB_HOST, strlen( 'localhost:' ) ),
		'php_errors' => dirname( $postbag_fpm->log ) . '/php-errors.log',
		'pids'       => array(
			'launcher' => getmypid(),
			'aws'      => $postbag_aws->pid,
		),
	),
	JSON_UNESCAPED_SLASHES
), "\n";

Postbag_Test_WordPress::wait_for_stdin_to_close();
