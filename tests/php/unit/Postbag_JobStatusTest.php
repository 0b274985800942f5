<?php
/**
 * postbag_job_status() and postbag_cancel_job(): the spool's view, the sender's, and cancels on both sides.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * A callback source that cancels its own job while it is being streamed (as
 * another request would), then serves pages on.
 */
final class Postbag_Job_Status_Test_Source {

	/** @var string The job to cancel. */
	public static $job_id = '';

	/** @var int Calls so far. */
	public static $calls = 0;

	/** @var int The call that cancels (5: the last page, so only the check before the uploads can stop it). */
	public static $cancel_at = 2;

	/**
	 * @param array    $args   Unused.
	 * @param int|null $cursor Last page served.
	 * @param int      $limit  Page size.
	 */
	public static function page( array $args, $cursor, int $limit ): array {
		if ( self::$cancel_at === ++self::$calls ) {
			postbag_cancel_job( self::$job_id );
		}
		$page = (int) $cursor + 1;
		return array(
			'rows'   => array( array( 'email' => "p$page@example.net" ) ),
			'cursor' => $page < 5 ? $page : null,
		);
	}
}

/**
 * @covers Postbag_Jobs
 * @covers Postbag_Job_Cancels
 * @covers Postbag_Batch_Uploader
 */
final class Postbag_JobStatusTest extends Postbag_Unit_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		Postbag_Job_Status_Test_Source::$calls = 0;
	}

	private static function job( array $changes = array() ): array {
		return array_merge(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ), array( 'email' => 'b@example.net' ) ),
				'subject'    => 'New post',
				'html'       => '<p>Hi</p>',
				'from'       => 'news@example.org',
			),
			$changes
		);
	}

	/** A job whose manifest is in the bucket. */
	private function uploaded_job(): string {
		$job_id = postbag_notify( self::job() );
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['uploaded'] );
		return $job_id;
	}

	/**
	 * @return array<string, array{0: string}>
	 */
	public function bad_ids(): array {
		return array(
			'empty'                => array( '' ),
			'a path'               => array( 'a/b' ),
			'going up'             => array( '../queue' ),
			'leading dot'          => array( '.hidden' ),
			'leading dash'         => array( '-x' ),
			'a space'              => array( 'a b' ),
			'a trailing newline'   => array( "0b7c5a2e\n" ),
			'non-ASCII'            => array( 'jöb' ),
			'65 characters'        => array( str_repeat( 'a', 65 ) ),
			'a query string'       => array( 'a?x=1' ),
			'a wildcard'           => array( 'a*' ),
		);
	}

	/**
	 * @dataProvider bad_ids
	 */
	public function test_a_bad_job_id_is_refused_naming_it_and_touches_nothing( string $job_id ): void {
		foreach ( array( postbag_job_status( $job_id ), postbag_cancel_job( $job_id ) ) as $error ) {
			$this->assertInstanceOf( WP_Error::class, $error );
			$this->assertSame( 'postbag_invalid_job_id', $error->get_error_code() );
			$this->assertSame( array( 'field' => 'job_id' ), $error->get_error_data() );
		}
		$this->assertSame( array(), $this->s3->reads );
		$this->assertSame( array(), $this->s3->calls );
		$this->assertSame( array(), glob( $this->spool_dir . '/*.cancel.php' ) ?: array() );
	}

	public function test_the_longest_id_is_valid(): void {
		$this->assertSame( 'uploaded', postbag_job_status( str_repeat( 'a', 64 ) )['state'] );
	}

	public function test_status_from_the_spool_while_the_job_is_there(): void {
		$job_id = postbag_notify( self::job() );
		$this->assertSame(
			array(
				'job_id'          => $job_id,
				'cancel'          => null,
				'state'           => 'streaming',
				'source'          => 'spool',
				'rows'            => 0,
				'dropped'         => 0,
				'suppressed'      => 0,
				'parts'           => 0,
				'parts_uploaded'  => 0,
				'attempts'        => 0,
				'last_error'      => '',
				'next_attempt_at' => null,
			),
			postbag_job_status( $job_id ),
			'queued: its recipients are read after the response'
		);

		$this->s3->fail_pattern = '/manifest\.json$/';
		$this->plugin->jobs()->stream_pending();
		$status = postbag_job_status( $job_id );
		$this->assertSame( 'waiting', $status['state'], 'its manifest waits for S3' );
		$this->assertSame( 2, $status['rows'] );
		$this->assertSame( array( 1, 1 ), array( $status['parts'], $status['parts_uploaded'] ) );
		$this->assertSame( 1, $status['attempts'] );
		$this->assertStringContainsString( 'HTTP 503', $status['last_error'] );
		$retry_at = strtotime( $status['next_attempt_at'] );
		$this->assertTrue( $retry_at >= $this->now + 60 && $retry_at <= $this->now + 66, 'a minute, plus jitter' );

		$this->now += 3600;
		$this->assertSame( 'uploading', postbag_job_status( $job_id )['state'], 'its retry is due' );
		$this->assertSame( array(), $this->s3->reads, 'the spool answers: no S3 read' );
	}

	public function test_a_failed_job_says_so(): void {
		$job_id = postbag_notify(
			self::job(
				array(
					'recipients' => static function (): Generator {
						yield array( 'email' => 'a@example.net' );
						throw new RuntimeException( 'the list went away' );
					},
				)
			)
		);
		$this->plugin->jobs()->stream_pending();
		$status = postbag_job_status( $job_id );
		$this->assertSame( 'failed', $status['state'] );
		$this->assertSame( 'Reading its recipients failed: the list went away', $status['last_error'] );
	}

	/**
	 * @return array<string, array{0: int}>
	 */
	public function not_written_yet(): array {
		return array(
			'404 NoSuchKey'                          => array( 404 ),
			'403 AccessDenied (no s3:ListBucket)' => array( 403 ),
		);
	}

	/**
	 * @dataProvider not_written_yet
	 */
	public function test_uploaded_without_a_status_yet_is_not_started( int $missing_status ): void {
		$job_id                   = $this->uploaded_job();
		$this->s3->missing_status = $missing_status;
		$this->assertSame(
			array(
				'job_id' => $job_id,
				'cancel' => null,
				'state'  => 'uploaded',
				'source' => 'sender',
			),
			postbag_job_status( $job_id )
		);
		$this->assertSame( array( "jobs/$job_id/status.json" ), $this->s3->reads );
	}

	public function test_the_senders_status_once_it_wrote_one(): void {
		$job_id = $this->uploaded_job();
		$doc    = array(
			'job_id'        => $job_id,
			'state'         => 'sending',
			'recipients'    => 2,
			'sent'          => 1,
			'duplicate'     => 0,
			'failed'        => 0,
			'suppressed'    => 0,
			'cancelled'     => 0,
			'remaining'     => 1,
			'rate'          => 12.5,
			'started_at'    => '2026-11-22T07:00:02Z',
			'updated_at'    => '2026-11-22T07:00:03Z',
			'estimated_end' => '2026-11-22T07:00:04Z',
		);
		$this->s3->put_objects( array( "jobs/$job_id/status.json" => (string) wp_json_encode( $doc ) ) );

		$this->assertSame(
			$doc + array(
				'cancel' => null,
				'source' => 'sender',
			),
			postbag_job_status( $job_id )
		);
	}

	/**
	 * @return array<string, array{0: int, 1: string}>
	 */
	public function unreadable(): array {
		return array(
			'S3 unavailable'      => array( 503, 'Service Unavailable' ),
			'network error'       => array( 0, 'curl error 7: Failed to connect' ),
			'a signature refused' => array( 403, 'SignatureDoesNotMatch: The request signature we calculated does not match' ),
		);
	}

	/**
	 * @dataProvider unreadable
	 */
	public function test_a_status_s3_cannot_give_is_an_error_with_the_reason( int $status, string $error ): void {
		$job_id                 = $this->uploaded_job();
		$this->s3->fail_pattern = '/status\.json$/';
		$this->s3->fail_status  = $status;
		$this->s3->fail_error   = $error;

		$result = postbag_job_status( $job_id );
		$this->assertInstanceOf( WP_Error::class, $result );
		$this->assertSame( 'postbag_s3_unavailable', $result->get_error_code() );
		$this->assertStringContainsString( $error, $result->get_error_message() );
		$this->assertSame( $status, $result->get_error_data()['status'] );
	}

	public function test_a_damaged_status_document_is_an_error(): void {
		$job_id = $this->uploaded_job();
		$this->s3->put_objects( array( "jobs/$job_id/status.json" => '["not", "a", "status"]' ) );
		$result = postbag_job_status( $job_id );
		$this->assertInstanceOf( WP_Error::class, $result );
		$this->assertSame( 'postbag_invalid_status', $result->get_error_code() );
	}

	public function test_no_bucket_configured_is_an_error_not_an_exception(): void {
		$this->plugin->remove_hooks();
		$plugin = new Postbag_Plugin( new Postbag_Config( array( 'bucket' => '' ) ), null, null, new Postbag_Spool( $this->spool_dir ) );
		Postbag_Plugin::replace( $plugin );
		$this->plugin = $plugin;

		$result = postbag_job_status( 'job-1' );
		$this->assertInstanceOf( WP_Error::class, $result );
		$this->assertStringContainsString( 'POSTBAG_BUCKET is not defined', $result->get_error_message() );
	}

	public function test_a_job_cancelled_in_the_spool_is_never_uploaded(): void {
		$job_id = postbag_notify( self::job() );
		$this->assertTrue( postbag_cancel_job( $job_id ) );

		$this->assertSame( array( array( $job_id, 'spool' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertSame( array(), $this->plugin->jobs()->ids(), 'dropped from the spool' );
		$this->plugin->flusher()->on_shutdown(); // What shutdown runs after the response.
		$this->plugin->jobs()->stream_pending( null, true );
		$this->assertSame( array(), $this->s3->calls, 'no part, no manifest, no cancel object' );
		$this->assertSame(
			array(
				'job_id'       => $job_id,
				'state'        => 'cancelled',
				'source'       => 'spool',
				'cancel'       => 'dropped',
				'cancelled_at' => gmdate( 'Y-m-d\TH:i:s\Z', $this->now ),
			),
			postbag_job_status( $job_id )
		);
		$this->assertSame( array( "$job_id.cancel.php" ), array_map( 'basename', glob( $this->spool_dir . "/$job_id.*" ) ), 'only the record of the cancel is left' );

		$this->assertTrue( postbag_cancel_job( $job_id ), 'a second cancel is a no-op' );
		$this->assertCount( 1, $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertSame( array(), $this->s3->calls );
	}

	public function test_a_job_waiting_for_s3_before_its_manifest_is_dropped_alone(): void {
		$this->s3->fail_pattern = '/^jobs\//';
		$job_id                 = postbag_notify( self::job() );
		$this->plugin->jobs()->stream_pending();
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->ids() );

		$this->s3->fail_pattern = null;
		$this->assertTrue( postbag_cancel_job( $job_id ) );
		$this->assertSame( array( array( $job_id, 'spool' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->now += 3600;
		do_action( Postbag_Spool_Retry::HOOK );
		$this->assertSame( array(), $this->s3->objects, 'its parts and manifest never reach the bucket' );
	}

	public function test_a_job_whose_manifest_upload_was_tried_gets_the_cancel_in_the_bucket(): void {
		// The PutObject failed, but a failure (a timeout) does not prove S3 did not store it.
		$this->s3->fail_pattern = '/manifest\.json$/';
		$job_id                 = postbag_notify( self::job() );
		$this->plugin->jobs()->stream_pending();
		$this->s3->fail_pattern = null;

		$this->assertTrue( postbag_cancel_job( $job_id ) );
		$this->assertSame( array( array( $job_id, 'bucket' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertArrayHasKey( "jobs/$job_id/cancel", $this->s3->objects );
		$this->assertArrayNotHasKey( "jobs/$job_id/manifest.json", $this->s3->objects, 'and the manifest is not tried again' );
		$this->assertSame( array(), $this->plugin->jobs()->ids() );
	}

	public function test_an_uploaded_job_is_cancelled_in_the_bucket(): void {
		$job_id = $this->uploaded_job();
		$this->assertTrue( postbag_cancel_job( $job_id ) );

		$this->assertSame( array( array( $job_id, 'bucket' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$object = $this->s3->objects[ "jobs/$job_id/cancel" ];
		$this->assertSame( 'application/json', $object['content_type'] );
		$this->assertSame( $job_id, json_decode( $object['body'], true )['job_id'] );
		$this->assertMatchesRegularExpression( '/^' . preg_quote( gmdate( 'Y-m-d\TH:i:s', $this->now ), '/' ) . '\.[0-9]{3}Z$/', json_decode( $object['body'], true )['requested_at'], 'the time of the cancel, to the millisecond' );
		$status = postbag_job_status( $job_id );
		$this->assertSame( array( 'uploaded', 'stored' ), array( $status['state'], $status['cancel'] ), 'the sender has not answered yet' );

		$this->assertTrue( postbag_cancel_job( $job_id ) );
		$this->assertCount( 1, $this->fired_with( 'postbag_job_cancelled' ), 'stored once' );
	}

	public function test_a_cancel_s3_refuses_is_spooled_and_retried(): void {
		$job_id                 = $this->uploaded_job();
		$this->s3->fail_pattern = '/cancel$/';
		$this->assertTrue( postbag_cancel_job( $job_id ), 'recorded: it is retried' );

		$this->assertSame( array(), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertSame( 'requested', postbag_job_status( $job_id )['cancel'] );
		$retry_at = wp_next_scheduled( Postbag_Spool_Retry::HOOK );
		$this->assertTrue( $retry_at >= $this->now + 60 && $retry_at <= $this->now + 66, 'backed off like a batch: a minute, plus jitter' );
		$this->plugin->jobs()->stream_pending();
		$this->assertCount( 1, array_filter( $this->s3->calls, static function ( array $keys ) use ( $job_id ): bool {
			return array( "jobs/$job_id/cancel" ) === $keys;
		} ), 'not retried before it is due' );

		$this->s3->fail_pattern = null;
		$this->now              = $retry_at;
		do_action( Postbag_Spool_Retry::HOOK ); // What WP-Cron runs once the retry is due.
		$this->assertSame( array( array( $job_id, 'bucket' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertArrayHasKey( "jobs/$job_id/cancel", $this->s3->objects );
		$this->assertSame( 'stored', postbag_job_status( $job_id )['cancel'] );
	}

	public function test_a_job_another_process_holds_is_dropped_when_it_lets_go(): void {
		$this->s3->fail_pattern = '/^jobs\//';
		$job_id                 = postbag_notify( self::job() );
		$this->plugin->jobs()->stream_pending();
		$this->s3->fail_pattern = null;
		$held                   = $this->plugin->spool()->try_lock( "$job_id.lock.php" ); // Another worker's lock.
		$this->assertNotNull( $held );
		try {
			$this->assertTrue( postbag_cancel_job( $job_id ) );
			$this->assertSame( array(), $this->fired_with( 'postbag_job_cancelled' ) );
			$this->assertSame( 'requested', postbag_job_status( $job_id )['cancel'] );
			$this->assertNotFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'a run settles it if that worker dies' );
		} finally {
			flock( $held, LOCK_UN );
			fclose( $held );
		}
		$this->now += 3600;
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['cancelled'] );
		$this->assertSame( array( array( $job_id, 'spool' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertSame( array(), $this->s3->objects );
	}

	/**
	 * @return array<string, array{0: int}>
	 */
	public function cancel_points(): array {
		return array(
			'on a middle page: stopped at the next page' => array( 2 ),
			'on the last page: stopped before its uploads' => array( 5 ),
		);
	}

	/**
	 * @dataProvider cancel_points
	 */
	public function test_a_cancel_while_the_job_streams_keeps_its_manifest_home( int $cancel_at ): void {
		$job_id                                    = postbag_notify(
			self::job( array( 'recipients' => array( 'callback' => 'Postbag_Job_Status_Test_Source::page' ) ) )
		);
		Postbag_Job_Status_Test_Source::$job_id    = $job_id;
		Postbag_Job_Status_Test_Source::$cancel_at = $cancel_at;
		$summary                                   = $this->plugin->jobs()->stream_pending();

		$this->assertSame( array( $job_id ), $summary['cancelled'] );
		$this->assertSame( $cancel_at, Postbag_Job_Status_Test_Source::$calls, 'no page read after the cancel' );
		$this->assertSame( array(), $this->s3->objects );
		$this->assertSame( array( "$job_id.cancel.php" ), array_map( 'basename', glob( $this->spool_dir . "/$job_id.*" ) ) );
		$this->assertSame( 'cancelled', postbag_job_status( $job_id )['state'] );
	}

	public function test_a_cancel_of_a_failed_job_clears_it(): void {
		$job_id = postbag_notify(
			self::job(
				array(
					'recipients' => static function (): Generator {
						throw new RuntimeException( 'gone' );
						yield; // phpcs:ignore Squiz.PHP.NonExecutableCode.Unreachable -- makes it a generator.
					},
				)
			)
		);
		$this->plugin->jobs()->stream_pending();
		$this->assertTrue( postbag_cancel_job( $job_id ) );
		$this->assertSame( array(), $this->plugin->jobs()->states(), 'no failed-job notice left' );
		$this->assertSame( 'cancelled', postbag_job_status( $job_id )['state'] );
	}

	public function test_settled_cancels_are_pruned_after_30_days(): void {
		$job_id = $this->uploaded_job();
		postbag_cancel_job( $job_id );
		$this->now += 30 * DAY_IN_SECONDS;
		$this->plugin->jobs()->stream_pending();
		$this->assertFileExists( $this->spool_dir . "/$job_id.cancel.php" );
		++$this->now;
		$this->plugin->jobs()->stream_pending();
		$this->assertFileDoesNotExist( $this->spool_dir . "/$job_id.cancel.php" );
	}
}
