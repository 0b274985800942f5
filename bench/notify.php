<?php
/**
 * What a visitor waits for when a page notifies many users, served the way a
 * production WordPress is: nginx, PHP-FPM (pm = static, 2 workers,
 * memory_limit 128M), MariaDB, Debian's WordPress, the plugin uploading to
 * the local stand-in's S3 (moto on 127.0.0.1). Boots the same throwaway site
 * as the PHPUnit harness and fills it with subscribers first.
 *
 * For each size, a request to a page calling postbag_notify() for the users
 * of a role holding that many: time to first byte and total as curl sees
 * them (best and median of --rounds), then the work after the response
 * (until the worker's shutdown work ends: the recipients streamed to part
 * files and the manifest uploaded), the worker's peak memory and the objects
 * of the job in the bucket. Then the same page sending N single wp_mail()
 * calls instead, for comparison. Prints Markdown tables; asserts nothing.
 *
 * Usage: php bench/notify.php [--sizes=0,1000,100000,1000000] [--rounds=3]
 *                             [--mails=0,1000,20000,100000]
 *
 * @package Postbag\Bench
 */

require dirname( __DIR__ ) . '/tests/php/support/boot.php';

Postbag_Test_WordPress::require_plugin();
if ( null === Postbag_Test_Nginx::binary() || null === Postbag_Test_Php_Fpm::binary() ) {
	fwrite( STDERR, "bench/notify.php needs nginx and php-fpm (Debian packages nginx php-fpm; `make bench` installs them as root).\n" );
	exit( 1 );
}
$postbag_options = getopt( '', array( 'sizes:', 'rounds:', 'mails:' ) );
$postbag_sizes   = postbag_bench_list( $postbag_options['sizes'] ?? '0,1000,100000,1000000' );
$postbag_mails   = postbag_bench_list( $postbag_options['mails'] ?? '0,1000,20000,100000' );
$postbag_rounds  = max( 1, (int) ( $postbag_options['rounds'] ?? 3 ) );

$postbag_aws  = new Postbag_Test_Local_Aws();
$postbag_site = null;
try {
	Postbag_Test_Subscribers::tune( $GLOBALS['wpdb'] );
	$postbag_start = microtime( true );
	$postbag_roles = Postbag_Test_Subscribers::create( $GLOBALS['wpdb'], max( $postbag_sizes ), $postbag_sizes );
	$postbag_made  = microtime( true ) - $postbag_start;

	$postbag_bucket = 'postbag-bench-' . bin2hex( random_bytes( 4 ) );
	$postbag_aws->s3( array( 'create-bucket', $postbag_bucket ) );
	$postbag_site = new Postbag_Test_Notify_Site( $postbag_aws, $postbag_bucket, Postbag_Test_WordPress::$sandbox->path( 'bench-spool' ) );
	postbag_bench_header( max( $postbag_sizes ), $postbag_made, $postbag_rounds );
	postbag_bench_warm_up( $postbag_site, function_exists( 'postbag_notify' ) ? Postbag_Test_Subscribers::role( 0 ) : null );
	if ( function_exists( 'postbag_notify' ) ) {
		postbag_bench_notify( $postbag_site, $postbag_roles, $postbag_rounds );
	} else {
		echo "postbag_notify() does not exist in this plugin: only the wp_mail() comparison is measured.\n\n";
	}
	postbag_bench_wp_mail( $postbag_site, $postbag_mails, $postbag_rounds );
	printf( "Load average at the end: %s\n", postbag_bench_load() );
} finally {
	if ( null !== $postbag_site ) {
		$postbag_site->stop();
	}
	$postbag_aws->stop();
}

/**
 * The load averages, e.g. "1.22 0.75 0.74".
 */
function postbag_bench_load(): string {
	return vsprintf( '%.2f %.2f %.2f', sys_getloadavg() );
}

/**
 * @return int[] The comma-separated counts of `$value`, ascending.
 */
function postbag_bench_list( string $value ): array {
	$list = array_map( 'intval', explode( ',', $value ) );
	sort( $list );
	return array_values( array_unique( array_map( 'abs', $list ) ) );
}

/**
 * What was measured on what.
 */
function postbag_bench_header( int $users, float $made, int $rounds ): void {
	printf( "Postbag: a request that notifies many users, through nginx %s and PHP-FPM %s\n", trim( (string) preg_replace( '~^.*nginx/~s', '', (string) shell_exec( '/usr/sbin/nginx -v 2>&1' ) ) ), PHP_VERSION );
	printf( "%s, WordPress %s, %d CPUs, load average %s at the start\n", gmdate( 'j M Y H:i' ) . ' UTC', get_bloginfo( 'version' ), (int) shell_exec( 'nproc' ), postbag_bench_load() );
	printf( "PHP-FPM pool: pm = static, 2 workers; %s\n", implode( '; ', Postbag_Test_Notify_Site::POOL ) );
	printf( "%s subscribers made in %.1f s (MariaDB's buffer pool: %d MB)\n", number_format( $users ), $made, Postbag_Test_Subscribers::BUFFER_POOL_BYTES / 1048576 );
	printf( "Best / median of %d rounds, each round every size in turn; peak memory: the highest\n\n", $rounds );
}

/**
 * A few requests first, so the opcode cache holds WordPress and the plugin's
 * classes for both paths (a job to nobody, no mail) before anything is timed.
 *
 * @param string|null $role A role nobody holds, or null when postbag_notify() is missing.
 */
function postbag_bench_warm_up( Postbag_Test_Notify_Site $site, ?string $role ): void {
	for ( $n = 0; $n < 2; $n++ ) {
		$site->request( array( 'mails' => 0 ), "warm-up-$n", 30 );
		$http = $site->request( null === $role ? array( 'mails' => 1 ) : array( 'role' => $role ), "warm-up-job-$n", 30 );
		if ( null !== $role && preg_match( '/^job (\S+)$/', $http['body'], $match ) ) {
			$site->follow( $match[1], "warm-up-job-$n", 120 );
		}
	}
}

/**
 * One request and the work its worker does after the response.
 *
 * @param array<string, string|int> $query  The page's query.
 * @param string                    $report Name of the worker's report.
 * @return array{http: array, reports: array[], after: ?float} The response, the worker's report
 *         (none if it never came), seconds from the end of the response to the end of its shutdown work.
 */
function postbag_bench_request( Postbag_Test_Notify_Site $site, array $query, string $report ): array {
	$http   = $site->request( $query, $report, 600 );
	$worker = $site->report( $report, 900 );
	return array(
		'http'    => $http,
		'reports' => array_filter( array( $worker ) ),
		'after'   => postbag_bench_after( $http, array_filter( array( $worker ) ) ),
	);
}

/**
 * Seconds from the end of the response to the end of the last worker's shutdown work.
 *
 * @param array   $http    From Postbag_Test_Nginx::get().
 * @param array[] $reports The workers' reports.
 */
function postbag_bench_after( array $http, array $reports ): ?float {
	// Without work after the response a report can beat curl's return by a hair.
	return $reports ? max( 0.0, max( array_column( $reports, 'ended_at' ) ) - $http['ended_at'] ) : null;
}

/**
 * Runs `$run( $key, $round )` for every key in each round, rounds outermost,
 * so load from other programs spreads over every key rather than landing on one.
 *
 * @param array    $keys   Sizes.
 * @param int      $rounds Rounds.
 * @param callable $run    Returns one run's figures.
 * @return array<int|string, array[]> Runs by key.
 */
function postbag_bench_interleaved( array $keys, int $rounds, callable $run ): array {
	$runs = array_fill_keys( $keys, array() );
	for ( $round = 0; $round < $rounds; $round++ ) {
		foreach ( $keys as $key ) {
			$runs[ $key ][] = $run( $key, $round );
		}
	}
	return $runs;
}

/**
 * postbag_notify() to the users of each role, and what the workers did after the response.
 *
 * @param array<int, string> $roles  Role by number of users holding it.
 * @param int                $rounds Requests per size.
 */
function postbag_bench_notify( Postbag_Test_Notify_Site $site, array $roles, int $rounds ): void {
	$by_size = postbag_bench_interleaved(
		array_keys( $roles ),
		$rounds,
		static function ( int $size, int $round ) use ( $site, $roles ): array {
			$report = "notify-$size-$round";
			$http   = $site->request( array( 'role' => $roles[ $size ] ), $report, 600 );
			$job    = preg_match( '/^job (\S+)$/', $http['body'], $match ) ? $match[1] : null;
			$follow = null === $job ? array(
				'outcome' => 'no job',
				'reports' => array_filter( array( $site->report( $report, 60 ) ) ),
			) : $site->follow( $job, $report, 900 );
			return array(
				'http'    => $http,
				'reports' => $follow['reports'],
				'after'   => postbag_bench_after( $http, $follow['reports'] ),
				'outcome' => $follow['outcome'],
				'objects' => null === $job ? 0 : $site->count( "jobs/$job/" ),
			);
		}
	);
	echo "One request calling postbag_notify() for the users of a role:\n\n";
	echo "| recipients | TTFB best / median | total best / median | answer | after the response best / median | recipients/s best / median | workers | peak memory used / allocated | objects in jobs/<id>/ | job |\n";
	echo "| ---: | --- | --- | --- | --- | --- | ---: | ---: | ---: | --- |\n";
	foreach ( $by_size as $size => $runs ) {
		$after = array_filter( array_column( $runs, 'after' ), 'is_float' );
		$last  = end( $runs );
		printf(
			"| %s | %s | %s | %s | %s | %s | %d | %s | %d | %s |\n",
			number_format( $size ),
			postbag_bench_ms( $runs, 'ttfb' ),
			postbag_bench_ms( $runs, 'total' ),
			postbag_bench_answer( $last['http'] ),
			$after ? sprintf( '%.2f / %.2f s', min( $after ), postbag_bench_median( $after ) ) : 'no report',
			! $after || 0 === $size ? '' : number_format( $size / max( min( $after ), 1e-6 ) ) . ' / ' . number_format( $size / max( postbag_bench_median( $after ), 1e-6 ) ),
			count( $last['reports'] ),
			postbag_bench_peak( $runs ),
			$last['objects'],
			str_replace( '|', '/', $last['outcome'] )
		);
	}
	echo "\n";
}

/**
 * The same page sending N single wp_mail() calls.
 *
 * @param int[] $counts Numbers of calls.
 * @param int   $rounds Requests per count.
 */
function postbag_bench_wp_mail( Postbag_Test_Notify_Site $site, array $counts, int $rounds ): void {
	$by_count = postbag_bench_interleaved(
		$counts,
		$rounds,
		static function ( int $count, int $round ) use ( $site ): array {
			return postbag_bench_request( $site, array( 'mails' => $count ), "mails-$count-$round" );
		}
	);
	echo "The same request sending N single marked wp_mail() calls instead:\n\n";
	echo "| wp_mail() calls | TTFB best / median | total best / median | answer | after the response best / median | peak memory used / allocated | batches uploaded |\n";
	echo "| ---: | --- | --- | --- | --- | ---: | ---: |\n";
	foreach ( $by_count as $count => $runs ) {
		$after = array_filter( array_column( $runs, 'after' ), 'is_float' );
		$last  = end( $runs );
		$batch = wp_list_filter( $last['reports'] ? $last['reports'][0]['actions'] : array(), array( 'action' => 'postbag_batch_uploaded' ) );
		printf(
			"| %s | %s | %s | %s | %s | %s | %s |\n",
			number_format( $count ),
			postbag_bench_ms( $runs, 'ttfb' ),
			postbag_bench_ms( $runs, 'total' ),
			postbag_bench_answer( $last['http'] ),
			$after ? sprintf( '%.2f / %.2f s', min( $after ), postbag_bench_median( $after ) ) : 'no report',
			postbag_bench_peak( $runs ),
			$last['reports'] ? number_format( count( $batch ) ) : ''
		);
	}
	echo "\n";
}

/**
 * "best / median" of a curl time, in milliseconds.
 *
 * @param array  $runs  From postbag_bench_request().
 * @param string $field ttfb or total.
 */
function postbag_bench_ms( array $runs, string $field ): string {
	$times = array_column( array_column( $runs, 'http' ), $field );
	return sprintf( '%.1f / %.1f ms', min( $times ) * 1000, postbag_bench_median( $times ) * 1000 );
}

/**
 * @param float[] $values
 */
function postbag_bench_median( array $values ): ?float {
	if ( ! $values ) {
		return null;
	}
	sort( $values );
	$middle = intdiv( count( $values ), 2 );
	return count( $values ) % 2 ? $values[ $middle ] : ( $values[ $middle - 1 ] + $values[ $middle ] ) / 2;
}

/**
 * The highest peak memory the workers reported, in MB: "used / allocated"
 * (allocated is what memory_limit counts; a worker keeps some of its last
 * request's, so it may exceed what this request used).
 *
 * @param array $runs From postbag_bench_request().
 */
function postbag_bench_peak( array $runs ): string {
	$reports = array_merge( ...array_column( $runs, 'reports' ) );
	return $reports ? sprintf( '%.1f / %.0f MB', max( array_column( $reports, 'peak_used' ) ) / 1048576, max( array_column( $reports, 'peak_bytes' ) ) / 1048576 ) : '';
}

/**
 * The HTTP status and the page's line (or curl's error), short.
 *
 * @param array $http From Postbag_Test_Nginx::get().
 */
function postbag_bench_answer( array $http ): string {
	$text = '' !== $http['error'] ? $http['error'] : preg_replace( '/^job \S+$/', 'job id', trim( strip_tags( $http['body'] ) ) );
	return $http['status'] . ' ' . str_replace( '|', '/', mb_strimwidth( (string) preg_replace( '/\s+/', ' ', $text ), 0, 60, '…' ) );
}
