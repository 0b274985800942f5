<?php
/**
 * make demo's WordPress (standin/demo_wordpress.py): Debian's WordPress with the
 * plugin active on a throwaway MariaDB (the PHP tests' harness,
 * tests/php/support), `--users` subscribers holding one role, served by nginx
 * and PHP-FPM at a free port on 127.0.0.1 (Postbag_Test_Notify_Site), the
 * plugin uploading to the stand-in make demo already runs.
 *
 *   POSTBAG_DEMO_ENDPOINT=http://127.0.0.1:PORT POSTBAG_DEMO_BUCKET=postbag-demo \
 *       php standin/wordpress-site.php --users=1000
 *   -> one JSON line: {"url", "page", "role", "users", "admin": [login, application
 *      password], "rest": the REST API's page (?rest_route=...), "pids": {...}}
 *   then serves until its stdin closes or it gets SIGTERM, and stops what it
 *   started by PID (MariaDB, PHP-FPM, nginx); the stand-in is the caller's.
 *
 * @package Postbag
 */

if ( PHP_SAPI !== 'cli' ) {
	exit( 2 );
}

$postbag_options = getopt( '', array( 'users:' ) );
$postbag_users   = max( 1, (int) ( $postbag_options['users'] ?? 1000 ) );

// WordPress in this process too: MariaDB started, WordPress installed, the plugin active.
require dirname( __DIR__ ) . '/tests/php/support/boot.php';

// Application passwords (the demo's REST calls as the admin) need HTTPS or a 'local'
// site; PHP-FPM's workers inherit this environment (clear_env = no).
putenv( 'WP_ENVIRONMENT_TYPE=local' );
$postbag_aws   = Postbag_Test_Local_Aws::attached( (string) getenv( 'POSTBAG_DEMO_ENDPOINT' ) );
$postbag_roles = Postbag_Test_Subscribers::create( $GLOBALS['wpdb'], $postbag_users, array( $postbag_users ) );
$postbag_site  = new Postbag_Test_Notify_Site( $postbag_aws, (string) getenv( 'POSTBAG_DEMO_BUCKET' ), Postbag_Test_WordPress::$sandbox->path( 'spool' ) );
register_shutdown_function( array( $postbag_site, 'stop' ) );
$postbag_admin = get_user_by( 'login', 'admin' );
list( $postbag_password ) = WP_Application_Passwords::create_new_application_password( $postbag_admin->ID, array( 'name' => 'make demo' ) );

echo wp_json_encode(
	array(
		'url'   => $postbag_site->nginx->url,
		'page'  => Postbag_Test_Nginx::PAGES_PATH . 'demo-send.php',
		'role'  => $postbag_roles[ $postbag_users ],
		'users' => $postbag_users,
		'admin' => array( $postbag_admin->user_login, $postbag_password ),
		'rest'  => Postbag_Test_Nginx::PAGES_PATH . 'nginx-rest.php',
		'pids'  => array( 'launcher' => getmypid() ),
	),
	JSON_UNESCAPED_SLASHES
), "\n";

Postbag_Test_WordPress::wait_for_stdin_to_close();
