<?php
/**
 * End to end on Debian's WordPress with the plugin active and moto's S3 on 127.0.0.1.
 *
 * @package Postbag\Tests
 */

/**
 * wp_mail() as a theme or plugin calls it: marked mail ends up as a batch
 * file in the bucket, everything else goes through core at once, and a
 * bucket that cannot be reached loses nothing.
 */
final class Postbag_SiteMailTest extends Postbag_Test_Live_Case {

	const UUID = '/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/';

	public function test_marked_mail_lands_in_the_bucket_as_a_batch_with_its_attachments(): void {
		$root   = Postbag_Test_Python::repo_root();
		$pixel  = $root . '/fixtures/attachments/pixel.png';
		$notes  = $root . '/fixtures/attachments/notes.txt';
		$report = random_bytes( 300 * 1024 ); // Over the 256 KiB inline limit: uploaded on its own.
		$large  = self::file( 'report.pdf', $report );

		$queued = wp_mail(
			array( 'Zoë Example <zoe@example.net>', self::MARKER ),
			'New post: Café culture',
			'<p>Hello Zoë</p>',
			array(
				'From: Blog News <news@example.org>',
				'Content-Type: text/html; charset=UTF-8',
				'Cc: Editors <editors@example.org>',
				'Bcc: archive@example.org',
				'Reply-To: Editors <editors@example.org>',
				'List-Unsubscribe: <https://blog.example.org/unsubscribe>',
			),
			array( $pixel, 'Notizen.txt' => $notes, $large )
		);

		$this->assertTrue( $queued );
		$this->assertSame( array(), $this->failures );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'a marked mail must not go through core' );
		$this->assertSame( array(), $this->objects(), 'nothing is uploaded before the flush' );

		$uploaded = $this->flush_uploaded();

		$this->assertCount( 1, $uploaded );
		$batch_id = $uploaded[0];
		$this->assertMatchesRegularExpression( self::UUID, $batch_id );
		$objects = $this->objects();
		$batch   = self::batches( $objects )[ "queue/$batch_id.json" ] ?? null;
		$this->assertNotNull( $batch, 'batch file under queue/<batch_id>.json; bucket has ' . implode( ', ', array_keys( $objects ) ) );
		$this->assertSame( 'AES256', $objects[ "queue/$batch_id.json" ]['sse'] );

		$this->assertSame( 1, $batch['version'] );
		$this->assertSame( $batch_id, $batch['batch_id'] );
		$this->assertSame( array( 'url' => home_url(), 'blog_id' => 1 ), $batch['site'] );
		$this->assertMatchesRegularExpression( '/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/', $batch['created_at'] );
		$this->assertEqualsWithDelta( time(), strtotime( $batch['created_at'] ), 60 );
		$this->assertSame(
			array(
				'from'         => 'Blog News <news@example.org>',
				'content_type' => 'text/html',
				'charset'      => 'UTF-8',
				'reply_to'     => array( 'Editors <editors@example.org>' ),
				'cc'           => array( 'Editors <editors@example.org>' ),
				'bcc'          => array( 'archive@example.org' ),
				'headers'      => array(
					array(
						'name'  => 'List-Unsubscribe',
						'value' => '<https://blog.example.org/unsubscribe>',
					),
				),
			),
			self::sorted_like( $batch['meta'], array( 'from', 'content_type', 'charset', 'reply_to', 'cc', 'bcc', 'headers' ) )
		);

		$this->assertCount( 1, $batch['emails'] );
		$mail = $batch['emails'][0];
		$this->assertMatchesRegularExpression( self::UUID, $mail['id'] );
		$this->assertSame( array( 'Zoë Example <zoe@example.net>' ), $mail['to'], 'the marker address is removed' );
		$this->assertSame( 'New post: Café culture', $mail['subject'] );
		$this->assertSame( '<p>Hello Zoë</p>', $mail['html'] );
		$this->assertArrayNotHasKey( 'text', $mail );

		$this->assertCount( 3, $mail['attachments'] );
		list( $inline_png, $inline_txt, $by_reference ) = $mail['attachments'];
		$this->assertSame( array( 'pixel.png', 'image/png' ), array( $inline_png['filename'], $inline_png['content_type'] ) );
		$this->assertSame( file_get_contents( $pixel ), base64_decode( $inline_png['content_base64'], true ) );
		$this->assertSame( array( 'Notizen.txt', 'text/plain' ), array( $inline_txt['filename'], $inline_txt['content_type'] ) );
		$this->assertSame( file_get_contents( $notes ), base64_decode( $inline_txt['content_base64'], true ) );

		$key = "queue/attachments/$batch_id/{$mail['id']}/2";
		$this->assertSame(
			array(
				'filename'     => 'report.pdf',
				'content_type' => 'application/pdf',
				'size'         => strlen( $report ),
				's3_key'       => $key,
			),
			self::sorted_like( $by_reference, array( 'filename', 'content_type', 'size', 's3_key' ) )
		);
		$this->assertArrayHasKey( $key, $objects, 'the large attachment is in the bucket' );
		$this->assertSame( $report, $objects[ $key ]['body'] );
		$this->assertEqualsCanonicalizing( array( "queue/$batch_id.json", $key ), array_keys( $objects ), 'nothing else was uploaded' );

		$this->assertSame( array( array( $batch_id, array( $mail['id'] ) ) ), $this->fired['postbag_batch_uploaded'] ?? null );
		$this->assertArrayNotHasKey( 'postbag_batch_spooled', $this->fired );
		$this->assertSame( array(), $this->plugin->spool()->states() );
	}

	public function test_a_request_configured_in_wp_config_uploads_its_mail_at_shutdown(): void {
		$constants = Postbag_Test_Local_Aws::site_constants( self::$aws->endpoint, $this->bucket, $this->spool_dir );
		$request   = new Postbag_Test_Process(
			array( PHP_BINARY, __DIR__ . '/requests/send-marked-mail.php', Postbag_Test_WordPress::$sandbox->path( 'wp-config.php' ), json_encode( $constants ), 'reader@example.net' ),
			Postbag_Test_WordPress::$sandbox->path( 'request.log' ),
			array( 'PATH' => (string) getenv( 'PATH' ) ), // No AWS_* variables: the constants must do.
			true
		);
		$answer    = $request->read_line( 30 );
		$status    = $request->wait( 30 );

		$this->assertSame( '{"queued":true}', $answer, 'wp_mail() returned true, with nothing printed by notices' );
		$this->assertSame( 0, $status, (string) file_get_contents( Postbag_Test_WordPress::$sandbox->path( 'request.log' ) ) );
		$batches = self::batches( $this->objects() );
		$this->assertCount( 1, $batches, 'uploaded on shutdown' );
		$mail = reset( $batches )['emails'][0];
		$this->assertSame( array( 'reader@example.net' ), $mail['to'] );
		$this->assertSame( 'Sent from a real request', $mail['subject'] );
		$this->assertSame( array(), glob( $this->spool_dir . '/*.batch.php' ) ?: array() );
	}

	public function test_many_marked_mails_are_chunked_into_batches_uploaded_together(): void {
		$subjects = array();
		for ( $i = 1; $i <= 30; $i++ ) {
			// Marked by the subject prefix this time.
			$subjects[] = "Digest $i";
			$this->assertTrue( wp_mail( "reader$i@example.net", "[Non-priority!] Digest $i", "Body $i" ) );
		}

		$this->assertCount( 2, $this->flush_uploaded() );
		$batches = self::batches( $this->objects() );
		$sizes   = array_map( 'count', array_column( $batches, 'emails' ) );
		sort( $sizes );
		$this->assertSame( array( 5, 25 ), $sizes, 'POSTBAG_CHUNK_MAX_MAILS defaults to 25' );
		$mails = array_merge( ...array_column( $batches, 'emails' ) );
		$got   = array_column( $mails, 'subject' );
		sort( $got, SORT_NATURAL );
		$this->assertSame( $subjects, $got, 'every mail exactly once, prefix removed' );
		$this->assertCount( 30, array_unique( array_column( $mails, 'id' ) ) );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent );
	}

	public function test_unmarked_mail_goes_through_core(): void {
		$sent = wp_mail( 'Reader <reader@example.net>', 'Your comment was approved', 'Thanks for writing.', array( 'Cc: moderator@example.org' ) );

		$this->assertTrue( $sent );
		$mails = Postbag_Test_Mailer::current()->sent;
		$this->assertCount( 1, $mails, 'core sent it while wp_mail() ran' );
		$this->assertSame( array( array( 'reader@example.net', 'Reader' ) ), $mails[0]['to'] );
		$this->assertSame( array( array( 'moderator@example.org', '' ) ), $mails[0]['cc'] );
		$this->assertSame( 'Your comment was approved', $mails[0]['subject'] );
		$this->assertSame( 'Thanks for writing.', $mails[0]['body'] );
		$this->assertSame( 0, $this->plugin->queue()->count() );

		$this->assertSame( array(), $this->plugin->flush() );
		$this->assertSame( array(), $this->objects() );
	}

	public function test_password_reset_mail_is_never_delayed(): void {
		// Even with S3 down, a reset link must go out while the user waits for it.
		$this->switch_to( $this->plugin_for( self::closed_endpoint() ) );
		$user = get_user_by( 'login', 'admin' );

		$result = retrieve_password( $user->user_login );

		$this->assertTrue( $result );
		$mails = Postbag_Test_Mailer::current()->sent;
		$this->assertCount( 1, $mails, 'sent by core during the request' );
		$this->assertSame( array( array( $user->user_email, '' ) ), $mails[0]['to'] );
		$this->assertStringContainsString( 'Password Reset', $mails[0]['subject'] );
		$this->assertStringContainsString( 'action=rp&key=', $mails[0]['body'] );
		$this->assertSame( 0, $this->plugin->queue()->count(), 'nothing queued' );
		$this->assertSame( array(), $this->plugin->flush() );
		$this->assertSame( array(), $this->plugin->spool()->states(), 'nothing spooled' );
		$this->assertSame( array(), $this->fired );
		$this->assertSame( array(), $this->failures );
	}

	public function test_unreachable_bucket_spools_the_batch_and_the_cron_retry_uploads_it_once(): void {
		$this->switch_to( $this->plugin_for( self::closed_endpoint() ) );
		$this->assertTrue( wp_mail( array( 'reader@example.net', self::MARKER ), 'Weekly digest', 'Body', array(), array( self::file( 'big.bin', random_bytes( 300 * 1024 ) ) ) ) );

		$outcome  = $this->plugin->flush();
		$batch_id = (string) array_key_first( $outcome );

		$this->assertCount( 1, $outcome );
		$this->assertStringContainsString( 'curl error 7', $outcome[ $batch_id ], 'connection refused' );
		$this->assertSame( array(), $this->objects() );
		$spooled = $this->fired['postbag_batch_spooled'] ?? array();
		$this->assertCount( 1, $spooled );
		$this->assertSame( $batch_id, $spooled[0][0] );
		$mail_ids = $spooled[0][1];
		$states   = $this->plugin->spool()->states();
		$this->assertSame( array( $batch_id ), array_keys( $states ) );
		$this->assertSame( 1, $states[ $batch_id ]['attempts'] );
		$this->assertFileExists( $this->spool_dir . "/$batch_id.batch.php" );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'no fallback through core unless the site asks' );
		$event = wp_get_scheduled_event( Postbag_Spool_Retry::HOOK );
		$this->assertNotFalse( $event, 'a retry is scheduled with WP-Cron' );

		// S3 is back (wp-config.php unchanged, the endpoint answers again) and the
		// retry is due: run the scheduled event as wp-cron.php does.
		$this->run_cron_event_at( $event, time() + Postbag_Spool_Retry::MAX_DELAY + 600 );

		$objects = $this->objects();
		$batches = self::batches( $objects );
		$this->assertSame( array( "queue/$batch_id.json" ), array_keys( $batches ), 'the same batch id, so the sender dedupes a replay' );
		$this->assertSame( $mail_ids, array_column( $batches[ "queue/$batch_id.json" ]['emails'], 'id' ) );
		$this->assertCount( 2, $objects, 'batch and its attachment' );
		$this->assertSame( array(), $this->plugin->spool()->states(), 'the spool is empty' );
		$this->assertFileDoesNotExist( $this->spool_dir . "/$batch_id.batch.php" );

		// Running the retry again (cron fires the hourly event too) uploads nothing more.
		do_action_ref_array( $event->hook, $event->args );
		$this->plugin->retry_spool( true );

		$this->assertSame( array_keys( $objects ), array_keys( $this->objects() ) );
		$uploaded = array_column( $this->fired['postbag_batch_uploaded'] ?? array(), 0 );
		$this->assertSame( array( $batch_id ), $uploaded, 'uploaded exactly once' );
		$this->assertSame( array(), $this->failures );
	}

	/**
	 * `$array` with the keys in `$order` first (assertSame compares key order too).
	 */
	private static function sorted_like( array $array, array $order ): array {
		return array_merge( array_intersect_key( array_flip( $order ), $array ), $array );
	}
}
