<?php
/**
 * Runs integration/requests/queue-many-mails.php in its own php-cli process.
 *
 * @package Postbag\Tests
 */

/**
 * One request queueing many mails under a given memory_limit, configured
 * by wp-config.php constants like a site, uploading to `$endpoint`; shared
 * by Postbag_MemoryLimitTest and bench/memory.php.
 */
final class Postbag_Test_Many_Mails {

	/**
	 * @param string $endpoint S3 endpoint.
	 * @param string $bucket   Bucket.
	 * @param string $spool    POSTBAG_SPOOL_DIR.
	 * @param int    $mails    How many to queue.
	 * @param string $limit    memory_limit, e.g. 128M.
	 * @return array{status: int, report: array, output: string} Exit status, the request's JSON report, all it printed.
	 */
	public static function run( string $endpoint, string $bucket, string $spool, int $mails, string $limit ): array {
		$constants = Postbag_Test_Local_Aws::site_constants( $endpoint, $bucket, $spool );
		$log     = Postbag_Test_WordPress::$sandbox->path( 'many-mails-' . bin2hex( random_bytes( 4 ) ) . '.log' );
		$request = new Postbag_Test_Process(
			array( PHP_BINARY, '-d', "memory_limit=$limit", '-d', 'display_errors=stderr', dirname( __DIR__ ) . '/integration/requests/queue-many-mails.php', Postbag_Test_WordPress::$sandbox->path( 'wp-config.php' ), json_encode( $constants ), (string) $mails ),
			$log,
			array( 'PATH' => (string) getenv( 'PATH' ) ), // No AWS_* variables: the constants must do.
			true
		);
		$line   = $request->read_line( 300 );
		$status = $request->wait( 60 );
		$output = (string) $line . "\n" . file_get_contents( $log );
		unlink( $log );
		$report = json_decode( (string) $line, true );
		return array(
			'status' => $status,
			'report' => is_array( $report ) ? $report : array(),
			'output' => $output,
		);
	}
}
