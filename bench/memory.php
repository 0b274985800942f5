<?php
/**
 * The plugin under a memory limit: one request (php-cli, -d memory_limit)
 * queues many small non-priority mails through wp_mail(); the plugin flushes
 * early when memory runs low and the rest at shutdown, to moto's S3 on
 * 127.0.0.1. Prints the request's peak memory, its times, and what reached
 * the bucket. Boots the same throwaway WordPress as the PHPUnit harness.
 *
 * Usage: php bench/memory.php [--mails=100000] [--memory-limit=128M]
 * Figures only: tests/php/integration/Postbag_MemoryLimitTest.php asserts.
 *
 * @package Postbag\Bench
 */

require dirname( __DIR__ ) . '/tests/php/support/boot.php';

Postbag_Test_WordPress::require_plugin();
$postbag_options = getopt( '', array( 'mails:', 'memory-limit:' ) );
$postbag_aws     = new Postbag_Test_Local_Aws();
try {
	postbag_bench_memory( $postbag_aws, max( 1, (int) ( $postbag_options['mails'] ?? 100000 ) ), (string) ( $postbag_options['memory-limit'] ?? '128M' ) );
} finally {
	$postbag_aws->stop();
}

/**
 * Runs the request and prints the figures.
 *
 * @param Postbag_Test_Local_Aws $aws   moto's server.
 * @param int                    $mails Mails to queue.
 * @param string                 $limit memory_limit of the request.
 */
function postbag_bench_memory( Postbag_Test_Local_Aws $aws, int $mails, string $limit ): void {
	$bucket = 'postbag-bench-' . bin2hex( random_bytes( 4 ) );
	$aws->s3( array( 'create-bucket', $bucket ) );
	$spool = Postbag_Test_WordPress::$sandbox->path( 'bench-spool' );
	$start = hrtime( true );
	$run   = Postbag_Test_Many_Mails::run( $aws->endpoint, $bucket, $spool, $mails, $limit );
	$wall  = ( hrtime( true ) - $start ) / 1e9;
	$found = $aws->s3( array( 'mails', $bucket ) );

	printf( "Postbag plugin under memory_limit=%s: PHP %s, WordPress %s\n\n", $limit, PHP_VERSION, get_bloginfo( 'version' ) );
	printf( "One php-cli request queueing %s non-priority mails through wp_mail():\n", number_format( $mails ) );
	printf( "  exit status %d, wp_mail() returned true %s times, %d refused\n", $run['status'], number_format( $run['report']['queued'] ?? 0 ), $run['report']['refused'] ?? 0 );
	printf( "  peak memory          %6.1f MB used, %6.1f MB allocated (memory_get_peak_usage)\n", ( $run['report']['peak_bytes'] ?? 0 ) / 1048576, ( $run['report']['peak_real_bytes'] ?? 0 ) / 1048576 );
	printf( "  queueing (wp_mail)   %6.2f s, with %d batches uploaded early\n", $run['report']['queue_seconds'] ?? 0, $run['report']['early_uploads'] ?? 0 );
	printf( "  whole request        %6.2f s (flushes, uploads included); %.2f s with PHP's start and WordPress's boot\n", $run['report']['seconds'] ?? 0, $wall );
	printf( "In the bucket: %s batch files, %s mails, %s distinct mail ids, %s distinct subjects\n", number_format( $found['batch_files'] ), number_format( $found['mails'] ), number_format( $found['distinct_mail_ids'] ), number_format( $found['distinct_subjects'] ) );
	printf( "  left in the spool: %d files\n", count( glob( $spool . '/*.batch.php' ) ?: array() ) );
	if ( 0 !== $run['status'] || $found['mails'] !== $mails ) {
		printf( "\nThe request said:\n%s\n", $run['output'] );
	}
}
