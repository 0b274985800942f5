<?php
/**
 * A PHP-FPM worker killed after the response, uploads in flight: nothing lost.
 *
 * @package Postbag\Tests
 */

/**
 * A page served by PHP-FPM queues 1,000 marked mails (40 batches); S3 sits
 * behind a gate that holds every upload. Once the page has answered and the
 * worker's uploads are stuck at the gate, the worker gets SIGKILL, as from
 * the OOM killer or a `kill -9`. Then the gate opens (whatever requests the
 * worker had fully sent may still reach S3, as they can for real) and the
 * retry the worker scheduled before answering runs: every mail must be in
 * the bucket, once, in the very batches the worker wrote to its spool.
 */
final class Postbag_WorkerKillTest extends Postbag_Test_Live_Case {

	const MAILS = 1000;

	const BATCHES = 40;

	public function test_a_worker_killed_after_the_response_loses_no_mail_and_sends_none_twice(): void {
		$this->require_php_fpm();
		list( $gate, $port ) = $this->gated_proxy( 'kill-gate-proxy' );
		$fpm                 = null;
		try {
			$fpm      = new Postbag_Test_Php_Fpm( Postbag_Test_WordPress::$sandbox );
			$response = $fpm->request( __DIR__ . '/requests/fpm-queue-mails.php', $this->page_params( "http://127.0.0.1:$port", array( 'POSTBAG_UPLOAD_TIMEOUT' => 120 ), array( 'POSTBAG_TEST_MAILS' => (string) self::MAILS ) ), 60 );
			list( , $body ) = explode( "\r\n\r\n", $response['stdout'], 2 ) + array( 1 => '' );
			$this->assertMatchesRegularExpression( '/^queued 1000 by \d+$/', $body, 'page body; php-fpm said: ' . $response['stderr'] . @file_get_contents( $fpm->log ) );
			$worker = (int) substr( $body, strrpos( $body, ' ' ) + 1 );

			$this->assertTrue( self::wait_for( static function () use ( $port ): bool {
				return self::connections_to( $port ) > 0;
			}, 30 ), 'the worker\'s uploads reached the gate' );
			$spooled = self::spooled_ids( $this->spool_dir );
			$this->assertCount( self::BATCHES, $spooled, 'every batch was on disk while its upload was in flight' );
			$this->assertSame( array(), $this->objects(), 'nothing got through the gate yet' );

			posix_kill( $worker, SIGKILL );
			$this->assertTrue( self::wait_for( static function () use ( $worker ): bool {
				return ! file_exists( "/proc/$worker" ) || false !== strpos( (string) @file_get_contents( "/proc/$worker/stat" ), ') Z ' );
			}, 10 ), 'the worker is gone' );
			posix_kill( $gate->pid, SIGUSR1 ); // What the dead worker had sent may still land.
			self::wait_for( static function () use ( $port ): bool {
				return 0 === self::connections_to( $port );
			}, 10 );
			$landed = count( self::batches( $this->objects() ) );
			$this->assertSame( $spooled, self::spooled_ids( $this->spool_dir ), 'the dead worker removed nothing from the spool' );
		} finally {
			$gate->stop();
			if ( null !== $fpm ) {
				$fpm->stop();
			}
		}

		// The retry the worker scheduled before it answered, run as wp-cron.php would once it is due.
		wp_cache_flush(); // The worker wrote the cron option behind this process's cache.
		$event = wp_get_scheduled_event( Postbag_Spool_Retry::HOOK );
		$this->assertNotFalse( $event, 'the worker scheduled the retry before answering' );
		$this->run_cron_event_at( $event, $event->timestamp );

		$found = self::$aws->s3( array( 'mails', $this->bucket ) );
		$this->assertSame( $spooled, $found['batch_ids'], "the very batches the worker spooled ($landed landed before the retry): no new ids" );
		$this->assertTrue( $found['keys_match_ids'] );
		$this->assertSame( self::MAILS, $found['mails'], 'no mail lost, none twice' );
		$this->assertSame( self::MAILS, $found['distinct_mail_ids'] );
		$this->assertSame( self::MAILS, $found['distinct_subjects'] );
		$this->assertSame( array(), self::spooled_ids( $this->spool_dir ), 'the spool is empty' );
		$this->assertSame( array(), $this->failures );
	}

	/**
	 * Ids of the batches in a spool directory, sorted.
	 *
	 * @return string[]
	 */
	private static function spooled_ids( string $dir ): array {
		clearstatcache();
		$ids = array_map(
			static function ( string $file ): string {
				return basename( $file, Postbag_Spool::BATCH_SUFFIX );
			},
			glob( $dir . '/*' . Postbag_Spool::BATCH_SUFFIX ) ?: array()
		);
		sort( $ids );
		return $ids;
	}

	/**
	 * Established TCP connections to 127.0.0.1:`$port` (this network namespace's /proc/net/tcp).
	 */
	private static function connections_to( int $port ): int {
		$count = 0;
		foreach ( file( '/proc/net/tcp', FILE_IGNORE_NEW_LINES ) ?: array() as $line ) {
			$fields = preg_split( '/\s+/', trim( $line ) );
			// local_address rem_address st: established (01) with the gate as the remote end.
			if ( isset( $fields[3] ) && '01' === $fields[3] && sprintf( '0100007F:%04X', $port ) === $fields[2] ) {
				++$count;
			}
		}
		return $count;
	}

	/**
	 * Polls `$done` every 50 ms until it holds or `$timeout` seconds pass.
	 */
	private static function wait_for( callable $done, float $timeout ): bool {
		$deadline = microtime( true ) + $timeout;
		do {
			if ( $done() ) {
				return true;
			}
			usleep( 50000 );
		} while ( microtime( true ) < $deadline );
		return $done();
	}
}
