<?php
/**
 * Turns a fresh database into a WordPress network (multisite, sub-directories)
 * with a second site and the plugin network-activated. Run by
 * Postbag_Test_WordPress::network() in child processes, in two phases:
 *
 *     php install-network.php <wp-config.php> <network.php> install   (WP_INSTALLING: tables, network)
 *     php install-network.php <wp-config.php> <network.php> sites     (multisite: second site, plugin)
 *
 * `<network.php>` defines the network's constants (its own database) before
 * the shared wp-config.php (and, outside the installer, the multisite ones).
 * Prints `done` when a phase got through, with the second site's URL after `sites`.
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' || 4 !== $argc || ! in_array( $argv[3], array( 'install', 'sites' ), true ) ) {
	fwrite( STDERR, "usage: php install-network.php <wp-config.php> <network.php> install|sites\n" );
	exit( 2 );
}
list( , $postbag_config, $postbag_network, $postbag_phase ) = $argv;

$_SERVER['HTTP_HOST']   = 'blog.example.org';
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REMOTE_ADDR'] = '127.0.0.1';
if ( 'install' === $postbag_phase ) {
	define( 'WP_INSTALLING', true );
}
require $postbag_network;
require $postbag_config;
require __DIR__ . '/install-common.php';

if ( 'install' === $postbag_phase ) {
	postbag_install_site( 'Postbag test network', 'admin@example.org' );
	// As wp-admin/network.php does: name the network tables on a single site.
	foreach ( $wpdb->tables( 'ms_global' ) as $postbag_table => $postbag_prefixed ) {
		$wpdb->$postbag_table = $postbag_prefixed;
	}
	install_network();
	$postbag_result = populate_network( 1, 'blog.example.org', 'admin@example.org', 'Postbag test network', '/', false );
	if ( is_wp_error( $postbag_result ) ) {
		fwrite( STDERR, 'populate_network(): ' . $postbag_result->get_error_message() . "\n" );
		exit( 1 );
	}
	echo "done\n";
	exit( 0 );
}

$postbag_site = wp_insert_site(
	array(
		'domain'  => 'blog.example.org',
		'path'    => '/second/',
		'title'   => 'Second site',
		'user_id' => 1,
	)
);
if ( is_wp_error( $postbag_site ) ) {
	fwrite( STDERR, 'wp_insert_site(): ' . $postbag_site->get_error_message() . "\n" );
	exit( 1 );
}
$postbag_activated = activate_plugin( Postbag_Test_WordPress::PLUGIN, '', true );
if ( is_wp_error( $postbag_activated ) ) {
	fwrite( STDERR, 'network activation: ' . $postbag_activated->get_error_message() . "\n" );
	exit( 1 );
}
echo 'done ', get_home_url( $postbag_site ), "\n";
exit( 0 );
