<?php
/**
 * Nothing lost: spool, cron retry with backoff, fallback through core.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Flusher
 * @covers Postbag_Spool
 * @covers Postbag_Spool_Retry
 * @covers Postbag_Sync_Sender
 */
final class Postbag_SpoolTest extends Postbag_Unit_Test_Case {

	/**
	 * Queues one mail and flushes it while S3 fails.
	 *
	 * @param string $subject Subject.
	 * @return string The spooled batch's id.
	 */
	private function spool_one( string $subject = 'Hello' ): string {
		$this->s3->fail_pattern = '/./';
		$this->assertTrue( wp_mail( array( 'Zoë <zoe@example.net>', self::MARKER ), $subject, 'Body', 'Cc: cc@example.net' ) );
		$outcome = $this->plugin->flush();
		$this->assertCount( 1, $outcome );
		return (string) array_keys( $outcome )[0];
	}

	public function test_failed_upload_spools_the_batch_in_a_protected_directory(): void {
		$id = $this->spool_one();

		$this->assertSame( array(), $this->s3->objects );
		$this->assertFileExists( "{$this->spool_dir}/$id.batch.php" );
		$this->assertSame( 0600, fileperms( "{$this->spool_dir}/$id.batch.php" ) & 0777 );
		$this->assertSame( 0700, fileperms( $this->spool_dir ) & 0777 );
		$this->assertStringContainsString( 'Require all denied', (string) file_get_contents( "{$this->spool_dir}/.htaccess" ) );
		$this->assertStringContainsString( 'Deny from all', (string) file_get_contents( "{$this->spool_dir}/.htaccess" ) );
		$this->assertStringContainsString( '<deny users="*" />', (string) file_get_contents( "{$this->spool_dir}/web.config" ) );
		$this->assertFileExists( "{$this->spool_dir}/index.php" );

		$spooled = $this->fired['postbag_batch_spooled'][0];
		$this->assertSame( $id, $spooled[0] );
		$this->assertCount( 1, $spooled[1] );
		$this->assertStringContainsString( 'HTTP 503 Service Unavailable', $spooled[2] );
		$this->assertArrayNotHasKey( 'postbag_batch_uploaded', $this->fired );

		$state = $this->plugin->spool()->states()[ $id ];
		$this->assertSame( 1, $state['attempts'] );
		$this->assertSame( $this->now, $state['first_spooled_at'] );
		$this->assertGreaterThanOrEqual( $this->now + 60, $state['next_attempt_at'] );
		$this->assertSame( $state['next_attempt_at'], wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'A cron event wakes up when the batch is due.' );
	}

	public function test_a_flush_that_spools_several_batches_schedules_their_retry_once(): void {
		$this->use_settings( array( 'chunk_max_mails' => 1 ) );
		$this->s3->fail_pattern = '/./';
		for ( $n = 0; $n < 3; $n++ ) {
			wp_mail( array( "u$n@example.net", self::MARKER ), "Mail $n", 'Body' );
		}
		$scheduled = 0;
		add_filter(
			'pre_schedule_event',
			static function ( $pre, $event ) use ( &$scheduled ) {
				if ( Postbag_Spool_Retry::HOOK === $event->hook ) {
					++$scheduled;
				}
				return $pre;
			},
			10,
			2
		);

		$this->plugin->flush();

		$this->assertCount( 3, $this->fired['postbag_batch_spooled'] );
		$this->assertSame( 1, $scheduled, 'One look at the spool per flush, not one per batch.' );
		$this->assertSame( min( array_column( $this->plugin->spool()->states(), 'next_attempt_at' ) ), wp_next_scheduled( Postbag_Spool_Retry::HOOK ) );
	}

	public function test_cron_retry_uploads_the_same_batch_and_removes_it(): void {
		$id         = $this->spool_one();
		$spooled    = $this->plugin->spool()->load( $id );
		$this->now += 3600;
		$this->s3->fail_pattern = null;

		wp_clear_scheduled_hook( Postbag_Spool_Retry::HOOK ); // As WP-Cron unschedules the event it runs.
		do_action( Postbag_Spool_Retry::HOOK );

		$this->assertSame( array( "queue/$id.json" ), array_keys( $this->s3->objects ) );
		$this->assertSame( $spooled->body, $this->s3->objects[ "queue/$id.json" ]['body'], 'Byte for byte the batch first tried: same batch and mail ids, so the sender never sends twice.' );
		$this->assertSame( array( array( $id, $spooled->mail_ids ) ), $this->fired['postbag_batch_uploaded'] );
		$this->assertFileDoesNotExist( "{$this->spool_dir}/$id.batch.php" );
		$this->assertFileDoesNotExist( "{$this->spool_dir}/$id.state.php" );
		$this->assertFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'Nothing left to retry, nothing scheduled.' );
	}

	public function test_retry_waits_for_the_backoff_then_doubles_it(): void {
		$id = $this->spool_one();

		$this->now += 30;
		$this->assertSame(
			array(
				'uploaded' => 0,
				'failed'   => 0,
				'sent'     => 0,
			),
			$this->plugin->retry_spool()
		);
		$this->assertSame( array( array( "queue/$id.json" ) ), $this->s3->calls, 'Not due yet: no upload tried.' );

		$this->now += 3600;
		$this->assertSame( 1, $this->plugin->retry_spool()['failed'] );
		$state = $this->plugin->spool()->states()[ $id ];
		$this->assertSame( 2, $state['attempts'] );
		$this->assertGreaterThanOrEqual( $this->now + 120, $state['next_attempt_at'] );
		$this->assertLessThanOrEqual( $this->now + 132, $state['next_attempt_at'] );
	}

	public function test_backoff_grows_exponentially_with_bounded_jitter(): void {
		$retry = new Postbag_Spool_Retry( $this->plugin->spool(), new Postbag_Batch_Uploader( 'time' ), new Postbag_Sync_Sender( $this->plugin->interceptor() ), 'time' );
		foreach ( array(
			1  => 60,
			2  => 120,
			3  => 240,
			6  => 1920,
			7  => 3600,
			40 => 3600,
		) as $attempts => $base ) {
			$delay = $retry->delay( $attempts );
			$this->assertGreaterThanOrEqual( $base, $delay, "attempt $attempts" );
			$this->assertLessThanOrEqual( $base + intdiv( $base, 10 ), $delay, "attempt $attempts" );
		}
	}

	public function test_forced_retry_ignores_the_backoff(): void {
		$this->spool_one();
		$this->s3->fail_pattern = null;

		$this->assertSame( 1, $this->plugin->retry_spool( true )['uploaded'] );
	}

	public function test_spooled_batches_survive_a_restart(): void {
		$id = $this->spool_one();
		$this->plugin->remove_hooks();

		// A later request: a new plugin, the same spool directory.
		$this->s3   = new Postbag_Fake_S3_Client();
		$this->now += 3600;
		Postbag_Plugin::replace( $this->make_plugin() );
		do_action( Postbag_Spool_Retry::HOOK );

		$this->assertArrayHasKey( "queue/$id.json", $this->s3->objects );
	}

	public function test_only_one_retry_runs_at_a_time(): void {
		$id    = $this->spool_one();
		$other = new Postbag_Spool( $this->spool_dir );
		$this->assertTrue( $other->lock() );
		$this->s3->fail_pattern = null;

		try {
			$this->assertSame( 0, $this->plugin->retry_spool( true )['uploaded'] );
			$this->assertFileExists( "{$this->spool_dir}/$id.batch.php" );
		} finally {
			$other->unlock();
		}
		$this->assertSame( 1, $this->plugin->retry_spool( true )['uploaded'] );
	}

	public function test_a_client_that_throws_spools_with_its_reason(): void {
		$this->plugin->remove_hooks();
		$throwing     = new class() {
			/**
			 * @param array $bodies Unused.
			 */
			public function put_objects( array $bodies ): array {
				throw new RuntimeException( 'No credentials found' );
			}
		};
		$this->plugin = new Postbag_Plugin(
			new Postbag_Config( array( 'bucket' => 'b' ) ),
			$throwing,
			function (): int {
				return $this->now;
			},
			new Postbag_Spool( $this->spool_dir )
		);
		Postbag_Plugin::replace( $this->plugin );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );

		$outcome = $this->plugin->flush();

		$this->assertStringContainsString( 'No credentials found', array_values( $outcome )[0] );
		$this->assertCount( 1, $this->plugin->spool()->states() );
	}

	public function test_without_a_bucket_mail_waits_in_the_spool(): void {
		$this->plugin->remove_hooks();
		$this->plugin = new Postbag_Plugin(
			new Postbag_Config( array() ),
			null,
			function (): int {
				return $this->now;
			},
			new Postbag_Spool( $this->spool_dir )
		);
		Postbag_Plugin::replace( $this->plugin );

		$this->assertTrue( wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' ) );
		$outcome = $this->plugin->flush();

		$this->assertStringContainsString( 'POSTBAG_BUCKET is not defined', array_values( $outcome )[0] );
		$this->assertCount( 1, $this->plugin->spool()->states() );
	}

	public function test_sync_fallback_sends_through_core_after_the_configured_time(): void {
		$file = $this->temp_file( 'notes.txt', 'attached' );
		$this->use_settings( array( 'inline_attachment_max_bytes' => 4 ) );
		$this->s3->fail_pattern = '/./';
		$this->assertTrue( wp_mail( array( 'Zoë <zoe@example.net>', self::MARKER ), '[Non-priority!] Digest', '<p>Hi</p>', array( 'Content-Type: text/html', 'Cc: cc@example.net', 'X-Campaign: weekly' ), array( $file ) ) );
		$id = (string) array_keys( $this->plugin->flush() )[0];
		add_filter(
			'postbag_sync_fallback_after',
			static function (): int {
				return 600;
			}
		);

		$this->now += 300;
		$this->plugin->retry_spool( true );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'Not yet: 300 s < 600 s.' );

		$this->now += 600;
		$this->assertSame( 1, $this->plugin->retry_spool( true )['sent'] );

		$sent = Postbag_Test_Mailer::current()->sent;
		$this->assertCount( 1, $sent );
		$this->assertSame( array( array( 'zoe@example.net', 'Zoë' ) ), $sent[0]['to'] );
		$this->assertSame( array( array( 'cc@example.net', '' ) ), $sent[0]['cc'] );
		$this->assertSame( 'Digest', $sent[0]['subject'] );
		$this->assertSame( 'text/html', $sent[0]['content_type'] );
		$this->assertStringContainsString( 'X-Campaign: weekly', $sent[0]['mime'] );
		$this->assertSame( 'notes.txt', $sent[0]['attachments'][0][2] );
		$this->assertStringContainsString( base64_encode( 'attached' ), $sent[0]['mime'] );
		$this->assertFileDoesNotExist( "{$this->spool_dir}/$id.batch.php" );
		$this->assertSame( $id, $this->fired['postbag_batch_sent_synchronously'][0][0] );
		$this->assertSame( 0, $this->plugin->queue()->count(), 'Postbag did not intercept its own fallback.' );
		$this->assertTrue( has_filter( 'pre_wp_mail', array( $this->plugin->interceptor(), 'pre_wp_mail' ) ) !== false, 'Interception is back on.' );
	}

	public function test_an_unwritable_spool_falls_back_to_core_at_once(): void {
		$this->plugin->remove_hooks();
		file_put_contents( $this->temp_dir . '/file', 'not a directory' );
		$this->plugin = new Postbag_Plugin(
			new Postbag_Config( array( 'bucket' => 'b' ) ),
			new Postbag_Fake_S3_Client( '/./' ),
			function (): int {
				return $this->now;
			},
			new Postbag_Spool( $this->temp_dir . '/file/spool' )
		);
		Postbag_Plugin::replace( $this->plugin );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );

		$this->plugin->flush();

		$this->assertCount( 1, Postbag_Test_Mailer::current()->sent );
		$this->assertSame( array( array( 'a@example.net', '' ) ), Postbag_Test_Mailer::current()->sent[0]['to'] );
		$this->assertArrayHasKey( 'postbag_batch_sent_synchronously', $this->fired );
	}

	public function test_a_damaged_spool_file_is_reported_not_fatal(): void {
		$good = $this->spool_one( 'Good' );
		$bad  = $this->spool_one( 'Bad' );
		file_put_contents( "{$this->spool_dir}/$bad.batch.php", '{"truncated' );
		$this->s3->fail_pattern = null;

		$summary = $this->plugin->retry_spool( true );

		$this->assertSame( 1, $summary['uploaded'] );
		$this->assertSame( 1, $summary['failed'] );
		$this->assertArrayHasKey( "queue/$good.json", $this->s3->objects );
		$this->assertStringContainsString( 'damaged', $this->plugin->spool()->states()[ $bad ]['last_error'] );
	}

	public function test_default_directory_is_outside_the_web_root_or_protected_uploads(): void {
		$dir = Postbag_Spool::default_dir();
		$this->assertSame( $this->spool_dir, Postbag_Spool::default_dir( $this->spool_dir ) );
		if ( wp_is_writable( dirname( untrailingslashit( ABSPATH ) ) ) ) {
			$this->assertStringStartsWith( dirname( untrailingslashit( ABSPATH ) ) . '/postbag-spool-', $dir );
		} else {
			$this->assertSame( wp_upload_dir( null, false )['basedir'] . '/postbag-spool', $dir );
		}
		$this->assertStringStartsNotWith( untrailingslashit( ABSPATH ), $dir );
	}

	public function test_a_large_backlog_is_retried_in_bounded_runs(): void {
		$this->use_settings( array( 'chunk_max_mails' => 1 ) );
		$this->s3->fail_pattern = '/./';
		for ( $n = 0; $n <= Postbag_Spool_Retry::BATCHES_PER_RUN; $n++ ) {
			wp_mail( array( "u$n@example.net", self::MARKER ), "Mail $n", 'Body' );
		}
		$this->plugin->flush();
		$this->s3->fail_pattern = null;
		$this->now             += 3600;
		wp_clear_scheduled_hook( Postbag_Spool_Retry::HOOK );

		$this->assertSame( Postbag_Spool_Retry::BATCHES_PER_RUN, $this->plugin->retry_spool()['uploaded'] );
		$this->assertLessThanOrEqual( $this->now, wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'The rest is due at once.' );
		$this->assertSame( 1, $this->plugin->retry_spool()['uploaded'] );
		$this->assertSame( array(), $this->plugin->spool()->states() );
	}

	public function test_a_partial_fallback_keeps_only_the_unsent_mails(): void {
		$this->use_settings( array( 'inline_attachment_max_bytes' => 4 ) );
		$this->s3->fail_pattern = '/./';
		wp_mail( array( 'a@example.net', self::MARKER ), 'One', 'Body', '', array( $this->temp_file( 'one.txt', 'first file' ) ) );
		wp_mail( array( 'b@example.net', self::MARKER ), 'Two', 'Body', '', array( $this->temp_file( 'two.txt', 'second file' ) ) );
		$id = (string) array_keys( $this->plugin->flush() )[0];
		add_filter(
			'postbag_sync_fallback_after',
			static function (): int {
				return 1;
			}
		);
		// Core refuses the second mail (another plugin's filter stands in for a failing mailer).
		add_filter(
			'pre_wp_mail',
			static function ( $result, array $atts ) {
				return 'Two' === $atts['subject'] ? false : $result;
			},
			5,
			2
		);
		$this->now += 60;

		$this->assertSame( 1, $this->plugin->retry_spool( true )['sent'] );

		$this->assertSame( array( 'One' ), array_column( Postbag_Test_Mailer::current()->sent, 'subject' ) );
		$left = $this->plugin->spool()->load( $id );
		$this->assertSame( array( 'Two' ), array_column( $left->payload()['emails'], 'subject' ) );
		$this->assertSame( array( 'second file' ), array_values( $left->attachments ), 'Only the unsent mail\'s attachment is kept.' );
		$state = $this->plugin->spool()->states()[ $id ];
		$this->assertSame( 1, $state['mails'] );
		$this->assertStringContainsString( 'sending through wp_mail() failed too', $state['last_error'] );
	}
}
