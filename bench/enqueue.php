<?php
/**
 * The plugin's figures: PHP time per mail to intercept, buffer, serialize and
 * spool non-priority mail sent through wp_mail() (what a visitor waits for),
 * and the time to upload the
 * resulting batch files to S3 (moto's server on 127.0.0.1) in parallel versus
 * one by one. Boots the same throwaway WordPress as the PHPUnit harness.
 *
 * Usage: php bench/enqueue.php [--mails=10000] [--concurrency=16] [--rounds=3]
 * Each figure is the best of the rounds (the machine may be busy). Target: at
 * most 50 µs per mail before upload. Figures only: nothing is asserted.
 *
 * @package Postbag\Bench
 */

require dirname( __DIR__ ) . '/tests/php/support/boot.php';

Postbag_Test_WordPress::require_plugin();
$postbag_options = getopt( '', array( 'mails:', 'concurrency:', 'rounds:' ) );
$postbag_aws     = new Postbag_Test_Local_Aws();
try {
	postbag_bench(
		$postbag_aws,
		max( 1, (int) ( $postbag_options['mails'] ?? 10000 ) ),
		max( 2, (int) ( $postbag_options['concurrency'] ?? 16 ) ),
		max( 1, (int) ( $postbag_options['rounds'] ?? 3 ) )
	);
} finally {
	$postbag_aws->stop();
}

/**
 * Runs both measurements and prints them.
 *
 * @param Postbag_Test_Local_Aws $aws         moto's server.
 * @param int                    $mails       Mails to queue.
 * @param int                    $concurrency Parallel uploads.
 * @param int                    $rounds      Repetitions; the best is shown.
 */
function postbag_bench( Postbag_Test_Local_Aws $aws, int $mails, int $concurrency, int $rounds ): void {
	$config = Postbag_Config::from_constants(
		array(
			'bucket'     => 'postbag-bench',
			'endpoint'   => $aws->endpoint,
			'path_style' => true,
		)
	);
	// The upload part is measured separately below: this plugin never uploads.
	$plugin = new Postbag_Plugin( $config, postbag_bench_s3_client( $config, 'postbag-bench', 1, $aws->endpoint ) );
	Postbag_Plugin::replace( $plugin );
	printf( "Postbag plugin bench: PHP %s, WordPress %s, best of %d rounds\n\n", PHP_VERSION, get_bloginfo( 'version' ), $rounds );

	postbag_bench_enqueue( $plugin, 200, false ); // Warm-up: autoloading, first filter runs.
	$core      = INF;
	$enqueue   = INF;
	$serialize = INF;
	$spool     = INF;
	for ( $round = 0; $round < $rounds; $round++ ) {
		$core                            = min( $core, postbag_bench_enqueue( $plugin, $mails, true )[0] );
		list( $queued, $built, $batches, $memory ) = postbag_bench_enqueue( $plugin, $mails, false );
		$enqueue                         = min( $enqueue, $queued );
		$serialize                       = min( $serialize, $built );
		$spool                           = min( $spool, postbag_bench_spool( $batches ) );
	}
	$bytes = array_sum( array_map( 'strlen', array_column( $batches, 'body' ) ) );
	$us    = static function ( float $seconds ) use ( $mails ): float {
		return $seconds / $mails * 1e6;
	};
	printf( "wp_mail() of %s non-priority mails (HTML, ~1 KB each) -> %d batch files, %.1f MB:\n", number_format( $mails ), count( $batches ), $bytes / 1e6 );
	printf( "  wp_mail() as the caller sees it            %6.1f µs/mail\n", $us( $enqueue ) );
	printf( "    WordPress before pre_wp_mail (any site)  %6.1f µs/mail  (core's 'wp_mail' filter, e.g. emoji on HTML)\n", $us( $core ) );
	printf( "    Postbag: intercept + buffer              %6.1f µs/mail\n", $us( max( 0.0, $enqueue - $core ) ) );
	printf( "  Postbag: serialize into batch files        %6.1f µs/mail\n", $us( $serialize ) );
	printf( "  Postbag: write them to the spool           %6.1f µs/mail  (each batch on disk before the response ends)\n", $us( $spool ) );
	printf( "  Postbag total before the response          %6.1f µs/mail  (target: at most 50)\n", $us( max( 0.0, $enqueue - $core ) + $serialize + $spool ) );
	printf( "  memory held by the queue before the flush  %6.1f MB (%.1f KB/mail)\n\n", $memory / 1e6, $memory / $mails / 1e3 );

	$files = array_column( $batches, 'body', 'key' );
	printf( "Upload of %d batch files (Postbag_S3_Client: SigV4, SSE, curl_multi) to moto's S3 on 127.0.0.1:\n", count( $files ) );
	postbag_bench_uploads( $aws, $config, $files, $aws->endpoint, $concurrency, $rounds );
	printf( "  (moto answers from one Python process: on loopback the server is the bottleneck)\n\n" );

	// S3 answers after a network round trip; a proxy that holds each answer
	// back by a typical one shows what uploading in parallel hides.
	$delay_ms = 25;
	$proxy    = new Postbag_Test_Process(
		array( Postbag_Test_Python::binary(), '-m', 'standin.proxy', (string) parse_url( $aws->endpoint, PHP_URL_PORT ), '--delay-ms', (string) $delay_ms ),
		Postbag_Test_WordPress::$sandbox->path( 'latency-proxy.log' ),
		null,
		true
	);
	try {
		$port = $proxy->read_line( 30 );
		if ( null === $port || ! ctype_digit( $port ) ) {
			throw new RuntimeException( 'The latency proxy did not start: ' . file_get_contents( Postbag_Test_WordPress::$sandbox->path( 'latency-proxy.log' ) ) );
		}
		printf( "The same through a proxy adding %d ms to every answer (a stand-in for the round trip to S3):\n", $delay_ms );
		postbag_bench_uploads( $aws, $config, $files, 'http://127.0.0.1:' . $port, $concurrency, 1 );
	} finally {
		$proxy->stop();
	}
}

/**
 * Uploads `$files` one by one, then `$concurrency` at a time, into fresh buckets; prints the times.
 *
 * @param Postbag_Test_Local_Aws $aws         moto's server (buckets are made and counted there).
 * @param Postbag_Config         $config      Plugin settings.
 * @param array<string, string>  $files       Key => batch file.
 * @param string                 $endpoint    Where the client uploads to.
 * @param int                    $concurrency Parallel uploads.
 * @param int                    $rounds      Repetitions; the best is shown.
 */
function postbag_bench_uploads( Postbag_Test_Local_Aws $aws, Postbag_Config $config, array $files, string $endpoint, int $concurrency, int $rounds ): void {
	$best = array();
	foreach ( array( 1, $concurrency ) as $n ) {
		$bucket = 'postbag-bench-' . bin2hex( random_bytes( 4 ) );
		$aws->s3( array( 'create-bucket', $bucket ) );
		$client = postbag_bench_s3_client( $config, $bucket, $n, $endpoint );
		$client->put_object( 'warm-up.json', '{}' );
		$best[ $n ] = INF;
		$cpu        = INF;
		$failed     = 0;
		for ( $round = 0; $round < $rounds; $round++ ) {
			$start      = hrtime( true );
			$cpu_start  = postbag_bench_cpu();
			$results    = $client->put_objects( $files );
			$cpu        = min( $cpu, postbag_bench_cpu() - $cpu_start );
			$best[ $n ] = min( $best[ $n ], ( hrtime( true ) - $start ) / 1e9 );
			$failed    += count( array_filter( array_column( $results, 'ok' ), 'postbag_bench_is_false' ) );
		}
		$stored = $aws->s3( array( 'count', $bucket, 'queue/' ) )['count'];
		printf( "  concurrency %2d  %6.2f s  %5.1f ms/file  PHP CPU %4.2f ms/file  (%d stored, %d uploads failed)\n", $n, $best[ $n ], $best[ $n ] / count( $files ) * 1e3, $cpu / count( $files ) * 1e3, $stored, $failed );
	}
	printf( "  in parallel: %.1fx the speed of one by one\n", $best[1] / $best[ $concurrency ] );
}

/**
 * Queues `$count` marked mails through wp_mail(), then drains the queue into batches.
 *
 * @param Postbag_Plugin $plugin    The active plugin.
 * @param int            $count     Mails.
 * @param bool           $core_only Stop each mail at the start of `pre_wp_mail`: what
 *                                  WordPress spends before any plugin sees the mail.
 * @return array{0: float, 1: float, 2: Postbag_Batch[], 3: int} Seconds in wp_mail(), seconds to
 *         serialize, the batches, bytes of memory the queued mails held.
 */
function postbag_bench_enqueue( Postbag_Plugin $plugin, int $count, bool $core_only ): array {
	$headers = "From: Blog News <news@example.org>\r\nContent-Type: text/html; charset=UTF-8\r\nList-Unsubscribe: <https://blog.example.org/unsubscribe>";
	$body    = '<p>Hello,</p><p>' . str_repeat( 'A new post on the blog you follow: Café culture in Köln. ', 16 ) . '</p><p><a href="https://blog.example.org/unsubscribe">Unsubscribe</a></p>';
	if ( $core_only ) {
		add_filter( 'pre_wp_mail', '__return_true', PHP_INT_MIN );
	}
	$before = memory_get_usage();
	$start  = hrtime( true );
	for ( $i = 0; $i < $count; $i++ ) {
		// Each body its own string, as when every reader gets a personal link.
		wp_mail( array( "Reader $i <reader$i@example.net>", 'nonpriority@asynchronous.mail' ), "New post: Café culture #$i", $body . "<p>Reader #$i</p>", $headers );
	}
	$queued  = hrtime( true );
	$memory  = memory_get_usage() - $before;
	$batches = $plugin->queue()->drain( time() );
	$done    = hrtime( true );
	if ( $core_only ) {
		remove_filter( 'pre_wp_mail', '__return_true', PHP_INT_MIN );
	}
	$expected = $core_only ? 0 : (int) ceil( $count / $plugin->config()->get( 'chunk_max_mails' ) );
	if ( count( $batches ) !== $expected ) {
		throw new RuntimeException( sprintf( 'Expected %d batches, got %d: the mails were not queued.', $expected, count( $batches ) ) );
	}
	return array( ( $queued - $start ) / 1e9, ( $done - $queued ) / 1e9, $batches, $memory );
}

/**
 * Writes batches to a fresh spool as the flush does before the response, then removes it.
 *
 * @param Postbag_Batch[] $batches Batches.
 * @return float Seconds the writes took.
 */
function postbag_bench_spool( array $batches ): float {
	$spool = new Postbag_Spool( Postbag_Test_WordPress::$sandbox->path( 'bench-spool-' . bin2hex( random_bytes( 4 ) ) ) );
	$retry = new Postbag_Spool_Retry( $spool, new Postbag_Batch_Uploader( 'time' ), new Postbag_Sync_Sender( Postbag_Plugin::instance()->interceptor() ), 'time' );
	$spool->prepare();
	$start = hrtime( true );
	foreach ( $batches as $batch ) {
		$retry->keep( $batch );
	}
	$seconds = ( hrtime( true ) - $start ) / 1e9;
	$spool->destroy();
	return $seconds;
}

/**
 * The plugin's S3 client for `$bucket` at `$endpoint`, `$concurrency` uploads at a time.
 */
function postbag_bench_s3_client( Postbag_Config $config, string $bucket, int $concurrency, string $endpoint ): Postbag_S3_Client {
	$credentials = static function (): Postbag_Credentials {
		return new Postbag_Credentials( Postbag_Test_Local_Aws::ACCESS_KEY_ID, Postbag_Test_Local_Aws::SECRET_ACCESS_KEY );
	};
	return new Postbag_S3_Client(
		array_merge(
			$config->s3_options(),
			array(
				'bucket'      => $bucket,
				'concurrency' => $concurrency,
				'endpoint'    => $endpoint,
			)
		),
		new Postbag_Credential_Chain( array( 'bench' => $credentials ) )
	);
}

/** Seconds of CPU this PHP process has used (user + system). */
function postbag_bench_cpu(): float {
	$usage = getrusage();
	return $usage['ru_utime.tv_sec'] + $usage['ru_utime.tv_usec'] / 1e6 + $usage['ru_stime.tv_sec'] + $usage['ru_stime.tv_usec'] / 1e6;
}

/**
 * @param mixed $value A result's `ok`.
 */
function postbag_bench_is_false( $value ): bool {
	return false === $value;
}
