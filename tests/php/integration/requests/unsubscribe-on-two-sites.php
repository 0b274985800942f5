<?php
/**
 * One request on the test network (multisite) in its own PHP process: a
 * reader of both sites unsubscribes from the first site's default list
 * through its one-click link, then each site streams a notify job to that
 * reader. Prints, per site URL, the list name on the wire, whether the local
 * list suppresses the reader there, and the job's id, as JSON; the plugin
 * uploads the manifests on `shutdown`.
 *
 * Usage: php unsubscribe-on-two-sites.php <wp-config.php> <network.php> <constants as JSON>
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/boot-network-request.php';

// Links need https, as in production.
add_filter(
	'rest_url',
	static function ( string $url ): string {
		return set_url_scheme( $url, 'https' );
	}
);
$postbag_reader = 'reader@example.net';
$postbag_lists  = Postbag_Plugin::instance()->lists();

switch_to_blog( 1 );
parse_str( (string) wp_parse_url( (string) $postbag_lists->url( Postbag_List_Unsubscribe::site_list( Postbag_List_Unsubscribe::DEFAULT_LIST ), $postbag_reader ), PHP_URL_QUERY ), $postbag_query );
$postbag_request = new WP_REST_Request( 'POST', '/' . Postbag_Unsubscribe_Token::ROUTE );
$postbag_request->set_query_params( $postbag_query );
$postbag_request->set_header( 'Content-Type', 'application/x-www-form-urlencoded' );
$postbag_request->set_body_params( array( 'List-Unsubscribe' => 'One-Click' ) );
$postbag_status = rest_do_request( $postbag_request )->get_status();
restore_current_blog();

$postbag_out = array( 'unsubscribe' => $postbag_status );
foreach ( array( 1, 2 ) as $postbag_blog ) {
	switch_to_blog( $postbag_blog );
	$postbag_job = postbag_notify(
		array(
			'recipients' => array( array( 'email' => $postbag_reader ) ),
			'subject'    => "Notification of site $postbag_blog",
			'html'       => '<p>Hello.</p>',
			'from'       => 'news@example.org',
		)
	);
	Postbag_Plugin::instance()->jobs()->stream_pending();
	$postbag_out[ home_url() ] = array(
		'list'       => Postbag_List_Unsubscribe::site_list( Postbag_List_Unsubscribe::DEFAULT_LIST ),
		'suppressed' => (bool) $postbag_lists->suppressed( Postbag_List_Unsubscribe::DEFAULT_LIST, array( $postbag_reader ) ),
		'job'        => is_wp_error( $postbag_job ) ? $postbag_job->get_error_message() : $postbag_job,
	);
	restore_current_blog();
}
echo wp_json_encode( $postbag_out ), "\n";
