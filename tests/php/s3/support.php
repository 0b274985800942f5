<?php
/**
 * What the S3 tests load: the plugin classes under test (no WordPress needed)
 * and the shared test harness (Python runner, moto's server, child processes).
 *
 * @package Postbag\Tests
 */

foreach ( array( 'credentials-exception', 'credentials', 'credential-chain', 'sigv4-signer', 's3-result', 's3-client' ) as $postbag_s3_class ) {
	require_once dirname( __DIR__, 3 ) . '/wp-plugin/includes/class-postbag-' . $postbag_s3_class . '.php';
}
require_once dirname( __DIR__ ) . '/support/autoload.php';

/**
 * Where a test needs something from outside (a download, a server), a missing
 * piece fails the test in CI and skips it, with the reason, on a laptop.
 */
final class Postbag_S3_Test_Needs {

	/**
	 * @param \PHPUnit\Framework\TestCase $test   The test that cannot run.
	 * @param string                      $reason What is missing and how to get it.
	 */
	public static function unavailable( \PHPUnit\Framework\TestCase $test, string $reason ): void {
		if ( 'true' === getenv( 'CI' ) ) {
			$test->fail( $reason );
		}
		$test->markTestSkipped( $reason . ' (a failure when CI=true)' );
	}
}
