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
 *   -> one JSON line: {"url", "page", "role", "users", "pids": {...}}
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

$postbag_aws   = Postbag_Test_Local_Aws::attached( (string) getenv( 'POSTBAG_DEMO_ENDPOINT' ) );
$postbag_roles = Postbag_Test_Subscribers::create( $GLOBALS['wpdb'], $postbag_users, array( $postbag_users ) );
$postbag_site  = new Postbag_Test_Notify_Site( $postbag_aws, (string) getenv( 'POSTBAG_DEMO_BUCKET' ), Postbag_Test_WordPress::$sandbox->path( 'spool' ) );
register_shutdown_function( array( $postbag_site, 'stop' ) );

echo wp_json_encode(
	array(
		'url'   => $postbag_site->nginx->url,
		'page'  => Postbag_Test_Nginx::PAGES_PATH . 'demo-send.php',
		'role'  => $postbag_roles[ $postbag_users ],
		'users' => $postbag_users,
		'pids'  => array( 'launcher' => getmypid() ),
	),
	JSON_UNESCAPED_SLASHES
), "\n";

// Until the demo closes our stdin (or stops us by PID).
while ( false !== fgets( STDIN ) ) {
	continue;
}
