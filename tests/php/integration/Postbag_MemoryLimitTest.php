<?php
/**
 * 100,000 mails in one request under PHP's default 128 MB: none lost.
 *
 * @package Postbag\Tests
 */

/**
 * A real request (php-cli with -d memory_limit=128M, the site configured by
 * wp-config.php constants) queues 100,000 small marked mails: far more than
 * 128 MB can hold at ~2 KB a mail. The plugin must flush early, measured
 * against the limit, and flush the rest at shutdown one batch at a time;
 * every mail must then be in the bucket exactly once. Before, such a request
 * died in its shutdown flush and lost everything, though every wp_mail()
 * had returned true.
 */
final class Postbag_MemoryLimitTest extends Postbag_Test_Live_Case {

	const MAILS = 100000;

	public function test_a_request_queueing_100000_mails_under_128_mb_loses_none(): void {
		$run    = Postbag_Test_Many_Mails::run( self::$aws->endpoint, $this->bucket, $this->spool_dir, self::MAILS, '128M' );
		$report = $run['report'];

		$this->assertSame( 0, $run['status'], $run['output'] );
		$this->assertSame( '128M', $report['memory_limit'] ?? null, $run['output'] );
		$this->assertSame( self::MAILS, $report['queued'], 'wp_mail() returned true for every mail' );
		$this->assertSame( 0, $report['refused'] );
		$this->assertLessThan( 128 * 1024 * 1024, $report['peak_real_bytes'] );
		$this->assertGreaterThan( 0, $report['early_uploads'], 'flushed before shutdown: the queue alone would not fit' );
		$this->assertSame( self::MAILS, $report['mails_uploaded'] );
		$this->assertSame( 0, $report['batches_spooled'], 'no upload failed' );
		$this->assertSame( array(), glob( $this->spool_dir . '/*' . Postbag_Spool::BATCH_SUFFIX ) ?: array(), 'the spool is empty again' );

		$found = self::$aws->s3( array( 'mails', $this->bucket ) );
		$this->assertSame( self::MAILS, $found['mails'] );
		$this->assertSame( self::MAILS, $found['distinct_mail_ids'] );
		$this->assertSame( self::MAILS, $found['distinct_subjects'] );
		$this->assertSame( self::subjects_sha256(), $found['subjects_sha256'], 'Mail #0 to Mail #99999, each once' );
		$this->assertSame( $report['batches_uploaded'], $found['batch_files'] );
		$this->assertTrue( $found['keys_match_ids'] );
	}

	/** What support/s3.py's `mails` gives for subjects Mail #0 ... Mail #99999. */
	private static function subjects_sha256(): string {
		$subjects = array();
		for ( $n = 0; $n < self::MAILS; $n++ ) {
			$subjects[] = "Mail #$n";
		}
		sort( $subjects, SORT_STRING );
		return hash( 'sha256', implode( "\n", $subjects ) );
	}
}
