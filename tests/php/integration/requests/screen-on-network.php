<?php
/**
 * One request on the test network (multisite) in its own PHP process: where
 * the Postbag screen is and who may open it and call `postbag/v1`. As a site
 * administrator (manage_options on the main site, no manage_network_options)
 * and as the network's super admin it fires the site and network admin menus,
 * renders the Postbag page through the callback the menu registered, and
 * calls every `postbag/v1` route but the public unsubscribe one (the site
 * administrator every route with its own method: each is refused before its
 * handler; the super admin the GET routes). Prints what each saw, as JSON.
 *
 * Usage: php screen-on-network.php <wp-config.php> <network.php> <constants as JSON>
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/boot-network-request.php';
require_once ABSPATH . 'wp-admin/includes/admin.php'; // add_menu_page(), as wp-admin loads it.

// wp_die() answers instead of ending the request: the HTTP status it would send.
add_filter(
	'wp_die_handler',
	static function () {
		return static function ( $message, $title = '', $args = array() ) {
			throw new RuntimeException( 'wp_die', (int) ( $args['response'] ?? 500 ) );
		};
	}
);

/**
 * Whether a menu fired now lists the Postbag page, and with which capability.
 *
 * @param string $hook 'admin_menu' or 'network_admin_menu'.
 */
function postbag_test_menu( string $hook ): ?string {
	$GLOBALS['menu'] = array();
	do_action( $hook );
	foreach ( $GLOBALS['menu'] as $item ) {
		if ( Postbag_Screen::SLUG === $item[2] ) {
			return $item[1];
		}
	}
	return null;
}

/**
 * The page: through the callback the network admin menu registered for this
 * user (add_menu_page() hooks it only for a user with the capability;
 * wp-admin refuses a page without one), else rendered directly, which the
 * screen itself refuses. The HTTP status of a refusal, or 'rendered'.
 */
function postbag_test_page(): string {
	postbag_test_menu( 'network_admin_menu' );
	$hook = get_plugin_page_hookname( Postbag_Screen::SLUG, '' );
	ob_start();
	try {
		if ( has_action( $hook ) ) {
			do_action( $hook );
		} else {
			( new Postbag_Screen( Postbag_Plugin::instance()->console() ) )->render();
		}
	} catch ( RuntimeException $e ) {
		ob_end_clean();
		return ( has_action( $hook ) ? 'hooked, ' : 'not hooked, ' ) . 'refused ' . $e->getCode();
	}
	return ( has_action( $hook ) ? 'hooked, ' : 'not hooked, ' ) . ( false !== strpos( (string) ob_get_clean(), 'id="postbag-screen"' ) ? 'rendered' : 'empty' );
}

/**
 * A value for a route's id that its pattern takes: a number, a job or batch id, or an address hash.
 *
 * @param string[] $group The named group and its pattern.
 */
function postbag_test_id( array $group ): string {
	foreach ( array( '1', 'x1', str_repeat( 'a', 64 ) ) as $value ) {
		if ( preg_match( '/^(?:' . $group[1] . ')$/', $value ) ) {
			return $value;
		}
	}
	return 'x1';
}

/**
 * Route => HTTP status, for each `postbag/v1` route and method (ids filled in).
 *
 * @param bool $get_only Only the GET routes.
 */
function postbag_test_routes( bool $get_only ): array {
	$statuses = array();
	foreach ( rest_get_server()->get_routes( 'postbag/v1' ) as $route => $handlers ) {
		if ( '/postbag/v1' === $route || false !== strpos( $route, 'unsubscribe' ) ) {
			continue;
		}
		$path = preg_replace_callback( '/\(\?P<\w+>((?:[^()]++|\((?:[^()]++)*\))*)\)/', 'postbag_test_id', $route );
		foreach ( $handlers as $handler ) {
			foreach ( array_keys( $handler['methods'] ) as $method ) {
				if ( ! $get_only || 'GET' === $method ) {
					$request = new WP_REST_Request( $method, $path );
					// Core validates arguments before it asks permission_callback: valid ones, so the answer is the permission's.
					$request->set_body_params( array( 'address' => 'reader@example.net' ) );
					$statuses[ "$method $path" ] = rest_do_request( $request )->get_status();
				}
			}
		}
	}
	return $statuses;
}

$postbag_site_admin = wp_insert_user(
	array(
		'user_login' => 'site-admin-' . bin2hex( random_bytes( 4 ) ),
		'user_pass'  => wp_generate_password(),
		'user_email' => 'site-admin-' . bin2hex( random_bytes( 4 ) ) . '@example.org',
		'role'       => 'administrator',
	)
);
$postbag_out        = array();
foreach ( array(
	'site_admin'  => $postbag_site_admin,
	'super_admin' => 1, // The network's installer.
) as $postbag_who => $postbag_user ) {
	wp_set_current_user( $postbag_user );
	$postbag_out[ $postbag_who ] = array(
		'multisite'              => is_multisite(),
		'super_admin'            => is_super_admin(),
		'manage_options'         => current_user_can( 'manage_options' ),
		'manage_network_options' => current_user_can( 'manage_network_options' ),
		'site_menu'              => postbag_test_menu( 'admin_menu' ),
		'network_menu'           => postbag_test_menu( 'network_admin_menu' ),
		'page'                   => postbag_test_page(),
		'screen_url'             => Postbag_Screen::url(),
		'routes'                 => postbag_test_routes( 'super_admin' === $postbag_who ),
	);
}
echo wp_json_encode( $postbag_out ), "\n";
