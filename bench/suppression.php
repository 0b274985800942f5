<?php
/**
 * What leaving suppressed recipients out costs a notify job's streaming:
 * 100,000 users read by keyset pages of 10,000 in this process (the plugin's
 * own streaming code, a fake S3 that keeps nothing), with an empty
 * suppression table, one of 50,000 entries (loaded whole once per stream)
 * and one of 100,000 (looked up a page at a time, 200 hashes a query); a
 * tenth of the entries are the job's users, half for every list, half for
 * the job's list. Per run:
 * the wall time of the whole stream (pages read, suppressed rows left out,
 * a signed link per row, gzip parts written to the spool, uploads to a null
 * client), and the same page lookups timed alone
 * (Postbag_List_Unsubscribe::checker(), hashing included).
 * Best of --rounds. Prints Markdown; asserts nothing.
 *
 * Usage: php bench/suppression.php [--users=100000] [--rounds=3]
 *
 * @package Postbag\Bench
 */

require dirname( __DIR__ ) . '/tests/php/support/boot.php';

/**
 * The S3 client's contract, storing nothing (the stream is measured, not the uploads).
 */
final class Postbag_Bench_Null_S3 {
	public function put_objects( array $bodies, string $content_type = 'application/json' ): array {
		unset( $content_type );
		return array_map(
			static function (): Postbag_S3_Result {
				return new Postbag_S3_Result( true, 200 );
			},
			$bodies
		);
	}

	public function get_object( string $key ): Postbag_S3_Result {
		return new Postbag_S3_Result( false, 404, "HTTP 404 NoSuchKey: $key" );
	}
}

Postbag_Test_WordPress::require_plugin();
$postbag_options = getopt( '', array( 'users:', 'rounds:' ) );
$postbag_users   = max( 1, (int) ( $postbag_options['users'] ?? 100000 ) );
$postbag_rounds  = max( 1, (int) ( $postbag_options['rounds'] ?? 3 ) );

Postbag_Test_Subscribers::tune( $GLOBALS['wpdb'] );
$postbag_made = microtime( true );
$postbag_role = Postbag_Test_Subscribers::create( $GLOBALS['wpdb'], $postbag_users, array( $postbag_users ) )[ $postbag_users ];
$postbag_made = microtime( true ) - $postbag_made;
Postbag_Suppressions::install();
add_filter(
	'rest_url',
	static function ( string $url ): string {
		return set_url_scheme( $url, 'https' ); // As on a production site: links are made for every row.
	}
);
$postbag_spool = Postbag_Test_WordPress::$sandbox->path( 'bench-suppression-spool' );
$postbag_lists = null;

printf( "Postbag: leaving suppressed recipients out of a %s-user notify job, %s UTC, PHP %s, WordPress %s, load %s\n", number_format( $postbag_users ), gmdate( 'j M Y H:i' ), PHP_VERSION, get_bloginfo( 'version' ), vsprintf( '%.2f %.2f %.2f', sys_getloadavg() ) );
printf( "%s subscribers made in %.1f s; best of %d rounds\n\n", number_format( $postbag_users ), $postbag_made, $postbag_rounds );
echo "| suppression table | rows written | suppressed | stream (s) | lookups (s) | lookups' share |\n|---|---:|---:|---:|---:|---:|\n";
try {
	foreach ( array( 0, Postbag_Suppressions::SET_MAX, 2 * Postbag_Suppressions::SET_MAX ) as $postbag_entries ) {
		postbag_bench_fill( $postbag_entries, $postbag_users );
		$postbag_best = null;
		for ( $postbag_n = 0; $postbag_n < $postbag_rounds; $postbag_n++ ) {
			$postbag_run            = postbag_bench_stream( $postbag_role, $postbag_spool );
			$postbag_run['lookups'] = postbag_bench_lookups( $postbag_users );
			$postbag_best           = null === $postbag_best || $postbag_run['stream'] < $postbag_best['stream'] ? $postbag_run : $postbag_best;
		}
		printf( "| %s entries | %s | %s | %.2f | %.3f | %.1f%% |\n", number_format( $postbag_entries ), number_format( $postbag_best['rows'] ), number_format( $postbag_best['suppressed'] ), $postbag_best['stream'], $postbag_best['lookups'], 100 * $postbag_best['lookups'] / $postbag_best['stream'] );
	}
} finally {
	$GLOBALS['wpdb']->query( 'TRUNCATE TABLE ' . Postbag_Suppressions::table() );
	Postbag_Test_Subscribers::remove( $GLOBALS['wpdb'], array( $postbag_users ) );
	Postbag_Test_Sandbox::remove_tree( $postbag_spool );
}

/**
 * @param int $entries Entries in all; a tenth of them the job's users (every 20th user).
 * @param int $users   Users made.
 */
function postbag_bench_fill( int $entries, int $users ): void {
	global $wpdb;
	$table = Postbag_Suppressions::table();
	$wpdb->query( "TRUNCATE TABLE $table" );
	$rows = array();
	$list = Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ); // This site's list, as jobs check it.
	for ( $n = 0; $n < $entries; $n++ ) {
		$mine    = $n < $entries / 10 && $n * 20 < $users;
		$address = $mine ? sprintf( 'reader%d@example.net', $n * 20 + 1 ) : "someone-else-$n@example.org";
		$scope   = 0 === $n % 2 ? 'all' : $list;
		$rows[]  = $wpdb->prepare( '(%s, %s, %s, %s, %s, %s, %s)', Postbag_Suppressions::hash( $address ), $scope, $address, 'manual', 'site', 'site', '2026-11-30 00:00:00' );
		if ( count( $rows ) >= 1000 || $n === $entries - 1 ) {
			$wpdb->query( "INSERT INTO $table (address_hash, scope, address, reason, source, origin, created_at) VALUES " . implode( ',', $rows ) ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared -- rows prepared above.
			$rows = array();
		}
	}
}

/**
 * One job to the role, streamed to its manifest by the plugin's own code.
 *
 * @return array{stream: float, rows: int, suppressed: int}
 */
function postbag_bench_stream( string $role, string $spool ): array {
	$plugin = new Postbag_Plugin( new Postbag_Config( array( 'bucket' => 'bench' ) ), new Postbag_Bench_Null_S3(), 'time', new Postbag_Spool( $spool ) );
	$done   = array();
	add_action(
		'postbag_job_uploaded',
		static function ( ...$args ) use ( &$done ): void {
			$done = $args;
		},
		10,
		4
	);
	$job   = $plugin->jobs()->notify(
		array(
			'recipients' => array( 'user_query' => array( 'role' => $role ) ),
			'subject'    => 'New post',
			'html'       => '<p>Hi {{ recipient.name }}</p>',
			'from'       => 'Blog <news@example.org>',
			'list'       => 'new-posts',
		)
	);
	$start = microtime( true );
	$plugin->jobs()->stream_pending( microtime( true ) + 3600, true );
	$stream = microtime( true ) - $start;
	remove_all_actions( 'postbag_job_uploaded' );
	if ( ! is_string( $job ) || array() === $done ) {
		throw new RuntimeException( 'The job did not reach its manifest: ' . ( is_string( $job ) ? $job : $job->get_error_message() ) );
	}
	return array(
		'stream'     => $stream,
		'rows'       => $done[1],
		'suppressed' => $done[3],
	);
}

/**
 * The same lookups the stream makes, alone: one call per page of 10,000 users' addresses.
 *
 * @param int $users Users made.
 * @return float Seconds.
 */
function postbag_bench_lookups( int $users ): float {
	$lists   = new Postbag_List_Unsubscribe( Postbag_Unsubscribe_Token::from_constants( 'time' ), new Postbag_Suppressions(), '' );
	$start   = microtime( true );
	$checker = $lists->checker( 'new-posts' );
	for ( $first = 1; $first <= $users; $first += Postbag_Job_Format_V2::PART_ROWS ) {
		$hashes = array();
		for ( $n = $first; $n < $first + Postbag_Job_Format_V2::PART_ROWS && $n <= $users; $n++ ) {
			$hashes[] = Postbag_Suppressions::hash( "reader$n@example.net" );
		}
		$checker( $hashes );
	}
	return microtime( true ) - $start;
}
