<?php
/**
 * The email log: its table, what the plugin records in it, the sync from the sender, pruning.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * Against the test site's real MariaDB table, through the real wp_mail()
 * path and the fake S3 client; receipts shaped as chalicelib/outcome.py
 * writes them (fixtures/log/).
 *
 * @covers Postbag_Mail_Log
 * @covers Postbag_Log_Recorder
 * @covers Postbag_Log_Sync
 */
final class Postbag_MailLogTest extends Postbag_Unit_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		self::empty_mail_log();
	}

	private function log(): Postbag_Mail_Log {
		return $this->plugin->log();
	}

	/**
	 * Queues one marked mail and returns its log row.
	 *
	 * @param string $to      Recipient.
	 * @param string $subject Subject.
	 */
	private function queue_mail( string $to = 'Ann <a@example.net>', string $subject = 'Hello' ): array {
		$this->assertTrue( wp_mail( array( $to, self::MARKER ), $subject, 'The body, never logged' ) );
		$this->plugin->log_recorder()->write_pending();
		$rows = $this->log()->query( array( 'subject' => $subject ) )['rows'];
		$this->assertCount( 1, $rows );
		return $rows[0];
	}

	/**
	 * A receipt fixture with this test's batch and mail ids in place of the placeholders.
	 *
	 * @param string                $name Fixture under fixtures/log/.
	 * @param array<string, string> $ids  Placeholder => id.
	 */
	private static function receipt( string $name, array $ids ): string {
		return strtr( (string) file_get_contents( dirname( __DIR__, 3 ) . "/fixtures/log/$name" ), $ids );
	}

	public function test_a_mail_is_logged_queued_then_uploaded_without_its_body(): void {
		$row = $this->queue_mail();
		$this->assertSame( 'queued', $row['status'] );
		$this->assertSame( 'Ann <a@example.net>', $row['recipients'] );
		$this->assertSame( 'a@example.net', $row['recipient'] );
		$this->assertSame( 'mail', $row['kind'] );
		$this->assertSame( '2026-11-22T07:00:00Z', $row['created_at'] );
		$this->assertStringNotContainsString( 'never logged', (string) wp_json_encode( $row ) );

		$this->flush_and_log();

		$batch = array_values( $this->s3->batches() )[0];
		$after = $this->log()->get( $row['mail_id'] );
		$this->assertSame( 'uploaded', $after['status'] );
		$this->assertSame( $batch['batch_id'], $after['batch_id'] );
		$this->assertSame( 'receipts/' . $batch['batch_id'] . '.json', $after['receipt_key'] );
		$this->assertSame( $batch['emails'][0]['id'], $row['mail_id'] );
	}

	public function test_the_requests_rows_are_written_after_its_uploads_with_their_status(): void {
		$changes = array();
		add_action(
			'postbag_mail_status_changed',
			static function ( array $row ) use ( &$changes ): void {
				$changes[] = $row['mail_id'];
			}
		);
		wp_mail( array( 'a@example.net', self::MARKER ), 'Later', 'Body' );
		$this->plugin->flush();
		$this->assertSame( 0, $this->log()->query( array() )['total'], 'nothing written while the visitor may wait' );

		$recorder = $this->plugin->log_recorder();
		$this->assertGreaterThan( has_action( 'shutdown', array( $this->plugin->flusher(), 'on_shutdown' ) ), has_action( 'shutdown', array( $recorder, 'write_pending' ) ), 'after the flusher, which finishes the response' );
		$recorder->write_pending();

		$row = $this->log()->query( array() )['rows'][0];
		$this->assertSame( 'uploaded', $row['status'] );
		$this->assertSame( array_values( $this->s3->batches() )[0]['batch_id'], $row['batch_id'] );
		$this->assertSame( array(), $changes, 'written with its status: no change to announce' );
	}

	public function test_a_held_mail_is_logged_scheduled_then_cancelled(): void {
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Later', 'Body', array( 'X-Postbag-Send-At: 2026-11-23 08:00' ) ) );
		$this->flush_and_log();
		$row = $this->log()->query( array( 'subject' => 'Later' ) )['rows'][0];
		$this->assertSame( 'scheduled', $row['status'] );
		$this->assertStringContainsString( 'Held by the sender until 2026-11-23T', $row['reason'] );
		$this->assertSame( 'receipts/' . $row['batch_id'] . '.json', $row['receipt_key'], 'its receipt is read once it is sent' );

		$this->assertTrue( postbag_cancel_mail_batch( $row['batch_id'] ) );

		$asked = $this->log()->get( $row['mail_id'] );
		$this->assertSame( array( 'scheduled', 'Cancel requested.' ), array( $asked['status'], $asked['reason'] ), 'asked, not done: the sender says' );
		$this->plugin->log_sync()->run();
		$this->assertSame( 'scheduled', $this->log()->get( $row['mail_id'] )['status'], 'no result and no receipt yet' );

		$this->s3->put_objects( array( 'status/control/batches/' . $row['batch_id'] . '.json' => self::control_result( $row['batch_id'], 'cancel', 'cancelled' ) ) );
		$this->plugin->log_sync()->run();

		$after = $this->log()->get( $row['mail_id'] );
		$this->assertSame( array( 'cancelled', 'Cancelled while held: never sent.' ), array( $after['status'], $after['reason'] ) );
	}

	/**
	 * `status/control/batches/<id>.json` as the sender writes it (docs/scheduling.md).
	 *
	 * @param string      $batch_id Batch.
	 * @param string      $request  cancel or reschedule.
	 * @param string      $outcome  cancelled, rescheduled, too_late, superseded.
	 * @param string|null $send_at  Its time after.
	 */
	private static function control_result( string $batch_id, string $request, string $outcome, ?string $send_at = null ): string {
		return (string) wp_json_encode(
			array(
				'version'      => 1,
				'kind'         => 'batch',
				'id'           => $batch_id,
				'request'      => $request,
				'outcome'      => $outcome,
				'send_at'      => $send_at,
				'requested_at' => '2026-11-22T07:00:00.000Z',
				'applied_at'   => '2026-11-22T07:00:01.250Z',
			)
		);
	}

	/**
	 * A held mail, cancelled from this site.
	 *
	 * @return array Its row.
	 */
	private function cancelled_held_mail(): array {
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Later', 'Body', array( 'X-Postbag-Send-At: 2026-11-22 07:10' ) ) );
		$this->flush_and_log();
		$row = $this->log()->query( array( 'subject' => 'Later' ) )['rows'][0];
		$this->assertTrue( postbag_cancel_mail_batch( $row['batch_id'] ) );
		return $row;
	}

	public function test_a_cancel_that_lost_the_race_with_the_release_ends_sent(): void {
		$row      = $this->cancelled_held_mail();
		$batch_id = $row['batch_id'];
		$receipt  = (string) wp_json_encode(
			array(
				'batch_id' => $batch_id,
				'mails'    => array(
					array(
						'mail_id'    => $row['mail_id'],
						'status'     => 'sent',
						'message_id' => '0100019c-0000-4000-8000-00000000000a',
					),
				),
			)
		);

		$this->s3->put_objects( array( "status/control/batches/$batch_id.json" => self::control_result( $batch_id, 'cancel', 'too_late' ) ) );
		$this->plugin->log_sync()->run();
		$after = $this->log()->get( $row['mail_id'] );
		$this->assertSame( array( 'uploaded', "receipts/$batch_id.json" ), array( $after['status'], $after['receipt_key'] ), 'too late: its receipt decides' );
		$this->assertStringContainsString( 'too late', $after['reason'] );

		$this->s3->put_objects( array( "receipts/$batch_id.json" => $receipt ) );
		$this->plugin->log_sync()->run();
		$this->assertSame( 'sent', $this->log()->get( $row['mail_id'] )['status'], 'never "never sent" for mail that went out' );
	}

	public function test_a_receipt_settles_a_cancel_whose_result_has_not_come(): void {
		$row      = $this->cancelled_held_mail();
		$batch_id = $row['batch_id'];
		$this->s3->put_objects( array( "receipts/$batch_id.json" => (string) wp_json_encode( array( 'batch_id' => $batch_id, 'mails' => array( array( 'mail_id' => $row['mail_id'], 'status' => 'sent', 'message_id' => 'm-1' ) ) ) ) ) );

		$this->plugin->log_sync()->run();

		$this->assertSame( array( "status/control/batches/$batch_id.json", "receipts/$batch_id.json" ), $this->s3->reads );
		$this->assertSame( 'sent', $this->log()->get( $row['mail_id'] )['status'] );
	}

	public function test_a_receipt_saying_cancelled_settles_the_mail_cancelled(): void {
		$row      = $this->queue_mail( 'a@example.net', 'Cancelled from the CLI' );
		$this->flush_and_log();
		$batch_id = $this->log()->get( $row['mail_id'] )['batch_id'];
		$this->s3->put_objects( array( "receipts/$batch_id.json" => (string) wp_json_encode( array( 'batch_id' => $batch_id, 'mails' => array( array( 'mail_id' => $row['mail_id'], 'status' => 'cancelled', 'reason' => 'cancelled while held' ) ) ) ) ) );

		$this->plugin->log_sync()->run();
		$this->plugin->log_sync()->run();

		$this->assertSame( 'cancelled', $this->log()->get( $row['mail_id'] )['status'] );
		$this->assertSame( array( "receipts/$batch_id.json" ), $this->s3->reads, 'settled: read once' );
	}

	public function test_a_move_is_settled_by_the_senders_result(): void {
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Later', 'Body', array( 'X-Postbag-Send-At: 2026-11-22 07:10' ) ) );
		$this->flush_and_log();
		$row = $this->log()->query( array( 'subject' => 'Later' ) )['rows'][0];
		$this->assertTrue( postbag_reschedule_mail_batch( $row['batch_id'], array( 'send_at' => '2026-11-22 09:00' ) ) );
		$this->assertStringStartsWith( 'Move requested', $this->log()->get( $row['mail_id'] )['reason'] );

		$this->s3->put_objects( array( 'status/control/batches/' . $row['batch_id'] . '.json' => self::control_result( $row['batch_id'], 'reschedule', 'rescheduled', '2026-11-22T09:00:00Z' ) ) );
		$this->plugin->log_sync()->run();

		$after = $this->log()->get( $row['mail_id'] );
		$this->assertSame( array( 'scheduled', 'Held by the sender until 2026-11-22T09:00:00Z (UTC).', '2026-11-22T09:00:00Z' ), array( $after['status'], $after['reason'], $after['due_at'] ) );
	}

	public function test_a_held_mails_receipt_is_not_looked_for_before_its_time(): void {
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Later', 'Body', array( 'X-Postbag-Send-At: 2026-11-22 08:00' ) ) );
		$this->flush_and_log();
		$row = $this->log()->query( array( 'subject' => 'Later' ) )['rows'][0];
		$this->assertSame( '2026-11-22T08:00:00Z', $row['due_at'] );

		$this->plugin->log_sync()->run();
		$this->assertSame( array(), $this->s3->reads, 'held: no GET before 08:00' );

		$this->now = strtotime( '2026-11-22T08:00:00Z' );
		$this->plugin->log_sync()->run();
		$this->assertSame( array( 'receipts/' . $row['batch_id'] . '.json' ), $this->s3->reads );
	}

	public function test_bounces_and_complaints_in_the_senders_export_mark_the_mail_they_were_about(): void {
		$older = $this->queue_mail( 'Bob <Bob@Example.net>', 'Older' );
		$this->now += 600;
		$latest = $this->queue_mail( 'bob@example.net', 'Latest' );
		$this->now += 600;
		$after_it = $this->queue_mail( 'bob@example.net', 'After the bounce' );
		$other    = $this->queue_mail( 'carol@example.net', 'Complained about' );
		foreach ( array( $older, $latest, $after_it, $other ) as $row ) {
			$this->log()->set_status( $row['mail_id'], 'sent' );
		}
		$entry   = static function ( string $address, string $reason, string $source, string $at ): array {
			return array( 'address_hash' => Postbag_Suppressions::hash( $address ), 'address' => $address, 'scope' => 'all', 'reason' => $reason, 'source' => $source, 'at' => $at );
		};
		$entries = array(
			$entry( 'bob@example.net', 'bounce', 'ses', gmdate( 'Y-m-d\TH:i:s.123\Z', $this->now - 300 ) ),
			$entry( 'carol@example.net', 'complaint', 'ses', gmdate( 'Y-m-d\TH:i:s\Z', $this->now + 60 ) ),
			$entry( 'bob@example.net', 'unsubscribe', 'site', gmdate( 'Y-m-d\TH:i:s\Z', $this->now + 60 ) ),
			'not an entry',
		);

		// What Postbag_Suppression_Inbox::sync() fires once it mirrored a new export; twice: a later export keeps the entries.
		do_action( 'postbag_suppression_export', $entries );
		do_action( 'postbag_suppression_export', $entries );

		$status = function ( array $row ): string {
			return $this->log()->get( $row['mail_id'] )['status'];
		};
		$this->assertSame( array( 'sent', 'bounced', 'sent', 'complained' ), array_map( $status, array( $older, $latest, $after_it, $other ) ), 'the latest mail sent before each event, once' );
		$this->assertStringContainsString( 'hard bounce', $this->log()->get( $latest['mail_id'] )['reason'] );
		$counts = $this->log()->counts( $this->now - DAY_IN_SECONDS );
		$this->assertSame( array( 1, 1 ), array( $counts['bounced'], $counts['complained'] ) );
	}

	public function test_a_job_the_sender_has_not_reported_on_goes_to_the_back_of_the_line(): void {
		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ) ),
				'subject'    => 'Streaming',
				'html'       => '<p>Hi</p>',
				'from'       => 'news@example.org',
			)
		);
		// Still in the spool (a long stream), its row already waiting on the sender (as after a cancel request).
		$this->log()->set_status( $job_id, 'uploaded', 'Cancel requested: mails already sent stay sent.' );
		$this->now += 300;

		$this->plugin->log_sync()->run();

		$this->assertSame( gmdate( 'Y-m-d\TH:i:s\Z', $this->now ), $this->log()->get( $job_id )['updated_at'], 'looked at: newer jobs are read before it next time (MAX_JOBS a run)' );
	}

	public function test_a_list_mail_suppressed_on_the_site_gets_a_row_saying_why(): void {
		// What the interceptor fires for a list mail whose recipient is suppressed (Postbag_UnsubscribeTest).
		do_action( 'postbag_mail_suppressed', 'gone@example.net', 'b1-weekly', array( 'subject' => 'Weekly digest' ) );
		$this->plugin->log_recorder()->write_pending();

		$rows = $this->log()->query( array( 'status' => 'suppressed' ) )['rows'];
		$this->assertCount( 1, $rows );
		$this->assertSame( array( 'gone@example.net', 'Weekly digest' ), array( $rows[0]['recipient'], $rows[0]['subject'] ) );
		$this->assertStringContainsString( '"b1-weekly"', $rows[0]['reason'] );
		$this->assertSame( 1, $this->log()->counts( $this->now - 60 )['suppressed'] );
	}

	public function test_a_mail_whose_upload_fails_is_logged_spooled_with_the_reason(): void {
		$this->s3->fail_pattern = '/./';
		$row                    = $this->queue_mail();

		$this->flush_and_log();

		$after = $this->log()->get( $row['mail_id'] );
		$this->assertSame( 'spooled', $after['status'] );
		$this->assertStringContainsString( 'HTTP 503', $after['reason'] );
	}

	public function test_each_status_change_fires_the_action_with_the_row_and_the_old_status(): void {
		$row   = $this->queue_mail();
		$seen  = array();
		$watch = static function ( array $changed, string $old ) use ( &$seen ): void {
			$seen[] = array( $changed['mail_id'], $changed['status'], $old );
		};
		add_action( 'postbag_mail_status_changed', $watch, 10, 2 );

		$this->flush_and_log();
		$this->log()->set_status( $row['mail_id'], 'uploaded', 'same status: no action' );
		$this->log()->set_status( $row['mail_id'], 'failed', 'refused' );

		$this->assertSame(
			array(
				array( $row['mail_id'], 'uploaded', 'queued' ),
				array( $row['mail_id'], 'failed', 'uploaded' ),
			),
			$seen
		);
	}

	public function test_an_unknown_status_is_refused(): void {
		$this->expectException( InvalidArgumentException::class );
		$this->log()->set_status( 'x', 'delivered-maybe' );
	}

	public function test_a_notify_job_is_logged_with_its_counts(): void {
		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ), array( 'email' => 'b@example.net' ) ),
				'subject'    => 'New post',
				'html'       => '<p>Hi</p>',
				'from'       => 'news@example.org',
			)
		);
		$this->assertSame( 'queued', $this->log()->get( $job_id )['status'] );
		$this->assertSame( '2 recipients', $this->log()->get( $job_id )['recipients'] );

		$this->plugin->jobs()->stream_pending();

		$row = $this->log()->get( $job_id );
		$this->assertSame( 'uploaded', $row['status'] );
		$this->assertSame( 'job', $row['kind'] );
		$this->assertSame(
			array(
				'rows'       => 2,
				'dropped'    => 0,
				'suppressed' => 0,
			),
			$row['counts']
		);
	}

	public function test_the_sync_settles_mails_from_their_receipt(): void {
		$sent   = $this->queue_mail( 'a@example.net', 'One' );
		$failed = $this->queue_mail( 'b@example.net', 'Two' );
		$later  = $this->queue_mail( 'c@example.net', 'Three' );
		$this->flush_and_log();
		$batch_id = $this->log()->get( $sent['mail_id'] )['batch_id'];

		$first = $this->plugin->log_sync()->run();
		$this->assertSame( 0, $first['receipts'], 'no receipt yet (404): the rows wait' );
		$this->assertSame( 'uploaded', $this->log()->get( $sent['mail_id'] )['status'] );

		$ids = array(
			'<batch_id>'  => $batch_id,
			'<mail_id 0>' => $sent['mail_id'],
			'<mail_id 1>' => $failed['mail_id'],
			'<mail_id 2>' => $later['mail_id'],
		);
		$this->s3->put_objects( array( "receipts/$batch_id.json" => self::receipt( 'receipt-handed-on.json', $ids ) ) );
		$summary = $this->plugin->log_sync()->run();

		$this->assertSame( 1, $summary['receipts'] );
		$this->assertSame( array(), $summary['errors'] );
		$row = $this->log()->get( $sent['mail_id'] );
		$this->assertSame( array( 'sent', '0100019c-0000-4000-8000-000000000001' ), array( $row['status'], $row['message_id'] ) );
		$row = $this->log()->get( $failed['mail_id'] );
		$this->assertSame( array( 'failed', 'MessageRejected: Email address is not verified.' ), array( $row['status'], $row['reason'] ) );
		$row = $this->log()->get( $later['mail_id'] );
		$this->assertSame( array( 'uploaded', "receipts/$batch_id.part-1.json" ), array( $row['status'], $row['receipt_key'] ), 'handed on: its continuation has the receipt' );

		$this->s3->put_objects( array( "receipts/$batch_id.part-1.json" => self::receipt( 'receipt-part-1.json', $ids ) ) );
		$this->plugin->log_sync()->run();
		$this->assertSame( 'sent', $this->log()->get( $later['mail_id'] )['status'] );
		$this->assertSame( (string) get_site_option( Postbag_Log_Sync::SYNCED_OPTION ), (string) $this->now );
	}

	public function test_a_receipt_that_never_comes_does_not_starve_the_others(): void {
		$first = $this->queue_mail( 'a@example.net', 'First' );
		$this->flush_and_log();
		$this->now += 60;
		$second = $this->queue_mail( 'b@example.net', 'Second' );
		$this->flush_and_log();
		$one_a_run = new Postbag_Log_Sync(
			$this->log(),
			new Postbag_Batch_Uploader(
				function () {
					return $this->s3;
				}
			),
			$this->plugin->jobs(),
			function (): int {
				return $this->now;
			},
			1
		);

		foreach ( array( 1, 2, 3 ) as $run ) {
			$this->now += 300;
			$one_a_run->run();
		}

		$keys = array_map(
			function ( array $row ): string {
				return 'receipts/' . $this->log()->get( $row['mail_id'] )['batch_id'] . '.json';
			},
			array( $first, $second, $first )
		);
		$this->assertSame( $keys, $this->s3->reads, 'each in turn, the one looked at longest ago first' );
	}

	public function test_uninstall_drops_the_table_and_install_makes_it_again(): void {
		global $wpdb;
		Postbag_Mail_Log::drop();
		$this->assertNull( $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', Postbag_Mail_Log::table() ) ) );
		$this->assertFalse( get_site_option( Postbag_Mail_Log::SCHEMA_OPTION ) );

		Postbag_Mail_Log::maybe_upgrade();

		$this->assertSame( Postbag_Mail_Log::table(), $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', Postbag_Mail_Log::table() ) ) );
	}

	public function test_the_sync_marks_a_quarantined_batch(): void {
		$row = $this->queue_mail();
		$this->flush_and_log();
		$batch_id = $this->log()->get( $row['mail_id'] )['batch_id'];
		$this->s3->put_objects( array( "receipts/$batch_id.json" => self::receipt( 'quarantine-error.json', array( '<batch_id>' => $batch_id ) ) ) );

		$this->plugin->log_sync()->run();

		$after = $this->log()->get( $row['mail_id'] );
		$this->assertSame( 'quarantined', $after['status'] );
		$this->assertStringContainsString( "quarantine/$batch_id.json", $after['reason'] );
		$this->assertStringContainsString( 'emails', $after['reason'] );
	}

	public function test_an_s3_failure_stops_the_run_and_is_reported(): void {
		$row = $this->queue_mail();
		$this->flush_and_log();
		$this->s3->fail_pattern = '/^receipts\//';
		$this->s3->fail_status  = 503;
		$this->s3->fail_error   = 'SlowDown';

		$summary = $this->plugin->log_sync()->run();

		$this->assertCount( 1, $summary['errors'] );
		$this->assertStringContainsString( 'HTTP 503 SlowDown', $summary['errors'][0] );
		$this->assertSame( 'uploaded', $this->log()->get( $row['mail_id'] )['status'] );
	}

	public function test_a_running_job_takes_the_senders_counts(): void {
		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ) ),
				'subject'    => 'Job',
				'html'       => '<p>Hi</p>',
				'from'       => 'news@example.org',
			)
		);
		$this->plugin->jobs()->stream_pending();
		$doc = array(
			'job_id'        => $job_id,
			'state'         => 'done',
			'recipients'    => 1,
			'sent'          => 1,
			'duplicate'     => 0,
			'failed'        => 0,
			'suppressed'    => 0,
			'cancelled'     => 0,
			'remaining'     => 0,
			'rate'          => 1.0,
			'started_at'    => '2026-11-22T07:00:02Z',
			'updated_at'    => '2026-11-22T07:00:03Z',
			'estimated_end' => null,
			'finished_at'   => '2026-11-22T07:00:03Z',
		);
		$this->s3->put_objects( array( "jobs/$job_id/status.json" => (string) wp_json_encode( $doc ) ) );

		$this->assertSame( 1, $this->plugin->log_sync()->run()['jobs'] );

		$row = $this->log()->get( $job_id );
		$this->assertSame( 'sent', $row['status'] );
		$this->assertSame( 1, $row['counts']['sent'] );
		$this->assertSame( '2026-11-22T07:00:03Z', $row['counts']['finished_at'] );
	}

	public function test_rows_older_than_the_retention_are_pruned(): void {
		$old = $this->queue_mail( 'a@example.net', 'Old' );
		$this->now += 29 * DAY_IN_SECONDS;
		$new = $this->queue_mail( 'b@example.net', 'New' );
		$this->now += 2 * DAY_IN_SECONDS;

		$this->assertSame( 1, $this->log()->prune() );

		$this->assertNull( $this->log()->get( $old['mail_id'] ) );
		$this->assertNotNull( $this->log()->get( $new['mail_id'] ) );
		$this->assertSame( 1, $this->log()->prune( 1 ), 'a shorter retention' );
	}

	public function test_the_retention_is_the_log_days_setting(): void {
		$this->use_settings( array( 'log_days' => 7 ) );
		$old = $this->queue_mail( 'a@example.net', 'Old' );
		$this->now += 8 * DAY_IN_SECONDS;

		$this->assertSame( 7, $this->log()->retention_days() );
		$this->assertSame( 1, $this->log()->prune() );
		$this->assertNull( $this->log()->get( $old['mail_id'] ) );
	}

	public function test_the_daily_prune_event_is_hooked_and_scheduled(): void {
		Postbag_Mail_Log::install();
		$this->assertNotFalse( wp_next_scheduled( Postbag_Mail_Log::PRUNE_HOOK ) );
		$this->assertNotFalse( wp_next_scheduled( Postbag_Log_Sync::HOOK ) );
		$this->assertNotFalse( has_action( Postbag_Mail_Log::PRUNE_HOOK, array( $this->log(), 'prune' ) ) );
	}

	public function test_counts_are_by_status_since_a_time(): void {
		$this->queue_mail( 'a@example.net', 'A' );
		$this->now += 2 * DAY_IN_SECONDS;
		$b = $this->queue_mail( 'b@example.net', 'B' );
		$this->log()->set_status( $b['mail_id'], 'failed', 'no' );

		$day = $this->log()->counts( $this->now - DAY_IN_SECONDS );
		$this->assertSame( 1, $day['failed'] );
		$this->assertSame( 0, $day['queued'] );
		$this->assertSame( Postbag_Mail_Log::STATUSES, array_keys( $day ) );
		$this->assertSame( 1, $this->log()->counts( $this->now - 7 * DAY_IN_SECONDS )['queued'] );
	}

	/**
	 * @return array<string, array{0: array, 1: string[]}>
	 */
	public function searches(): array {
		return array(
			'all'                  => array( array(), array( 'Gamma', 'Beta', 'Alpha' ) ),
			'status'               => array( array( 'status' => 'failed' ), array( 'Beta' ) ),
			'recipient, any case'  => array( array( 'recipient' => 'BOB@' ), array( 'Beta' ) ),
			'subject'              => array( array( 'subject' => 'alp' ), array( 'Alpha' ) ),
			'search in subject'    => array( array( 'search' => 'Gam' ), array( 'Gamma' ) ),
			'search in recipients' => array( array( 'search' => 'carol' ), array( 'Gamma' ) ),
			'LIKE wildcards literal' => array( array( 'search' => '%' ), array() ),
			'after'                => array( array( 'after' => 1795330800 + DAY_IN_SECONDS ), array( 'Gamma', 'Beta' ) ),
			'before'               => array( array( 'before' => 1795330800 + DAY_IN_SECONDS ), array( 'Alpha' ) ),
			'page 2 of 2 per page' => array(
				array(
					'page'     => 2,
					'per_page' => 2,
				),
				array( 'Alpha' ),
			),
		);
	}

	/**
	 * @dataProvider searches
	 *
	 * @param array    $filters  Filters.
	 * @param string[] $subjects Subjects found, newest first.
	 */
	public function test_the_log_is_searched( array $filters, array $subjects ): void {
		$this->queue_mail( 'ann@example.net', 'Alpha' );
		$this->now += DAY_IN_SECONDS;
		$beta = $this->queue_mail( 'Bob <bob@example.net>', 'Beta' );
		$this->log()->set_status( $beta['mail_id'], 'failed', 'refused' );
		$this->now += DAY_IN_SECONDS;
		$this->queue_mail( 'carol@example.net', 'Gamma' );

		$result = $this->log()->query( $filters );

		$this->assertSame( $subjects, array_column( $result['rows'], 'subject' ) );
		$this->assertSame( isset( $filters['page'] ) ? 3 : count( $subjects ), $result['total'] );
	}

	public function test_an_older_schema_is_upgraded_by_dbdelta(): void {
		global $wpdb;
		$table = Postbag_Mail_Log::table();
		// Schema 1: no job counts, no recipient index.
		$wpdb->query( "DROP TABLE $table" ); // phpcs:ignore WordPress.DB
		$wpdb->query( "CREATE TABLE $table ( id bigint(20) unsigned NOT NULL AUTO_INCREMENT, kind varchar(8) NOT NULL DEFAULT 'mail', mail_id varchar(64) NOT NULL, batch_id varchar(128) NOT NULL DEFAULT '', blog_id bigint(20) unsigned NOT NULL DEFAULT 0, recipients text NOT NULL, recipient varchar(191) NOT NULL DEFAULT '', subject varchar(255) NOT NULL DEFAULT '', status varchar(20) NOT NULL DEFAULT 'queued', reason text NULL, message_id varchar(255) NOT NULL DEFAULT '', receipt_key varchar(255) NOT NULL DEFAULT '', created_at datetime NOT NULL, updated_at datetime NOT NULL, PRIMARY KEY (id), UNIQUE KEY mail_id (mail_id) )" ); // phpcs:ignore WordPress.DB
		$wpdb->query( $wpdb->prepare( "INSERT INTO $table (mail_id, recipients, created_at, updated_at) VALUES (%s, %s, %s, %s)", 'kept', 'a@example.net', '2026-11-22 07:00:00', '2026-11-22 07:00:00' ) ); // phpcs:ignore WordPress.DB
		update_site_option( Postbag_Mail_Log::SCHEMA_OPTION, 1 );

		Postbag_Mail_Log::maybe_upgrade();

		$columns = $wpdb->get_col( "SHOW COLUMNS FROM $table" ); // phpcs:ignore WordPress.DB
		$this->assertContains( 'counts', $columns );
		$this->assertContains( 'due_at', $columns, 'schema 3: when a held mail is due' );
		$indexes = array_column( $wpdb->get_results( "SHOW INDEX FROM $table", ARRAY_A ), 'Key_name' ); // phpcs:ignore WordPress.DB
		$this->assertContains( 'recipient', $indexes );
		$this->assertContains( 'status_created', $indexes );
		$this->assertSame( Postbag_Mail_Log::SCHEMA_VERSION, (int) get_site_option( Postbag_Mail_Log::SCHEMA_OPTION ) );
		$this->assertNotNull( $this->log()->get( 'kept' ), 'rows survive the upgrade' );
	}
}
