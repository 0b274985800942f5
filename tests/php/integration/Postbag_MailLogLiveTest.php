<?php
/**
 * The email log through the whole path: wp_mail(), moto's S3, the Python sender, the sync, a resend.
 *
 * @package Postbag\Tests
 */

/**
 * Two mails queued through the real wp_mail() path and uploaded by the real
 * S3 client to the stand-in's moto; the sender's Lambda handler sends their
 * batches under its own moto (tests/php/contract/deliver_batches.py), which
 * writes the receipts; those receipts are put in the site's bucket, and the
 * sync reads them back with signed GETs: one mail sent with its SES message
 * id, one refused with the sender's reason, which "Send again" turns into
 * `requests/redrive/<uuid>.json`.
 *
 * @covers Postbag_Mail_Log
 * @covers Postbag_Log_Recorder
 * @covers Postbag_Log_Sync
 * @covers Postbag_Console
 */
final class Postbag_MailLogLiveTest extends Postbag_Test_Live_Case {

	protected function setUp(): void {
		parent::setUp();
		global $wpdb;
		$wpdb->query( 'TRUNCATE TABLE ' . Postbag_Mail_Log::table() ); // phpcs:ignore WordPress.DB
	}

	/**
	 * @param string $subject Subject.
	 */
	private function row( string $subject ): array {
		$rows = $this->plugin->log()->query( array( 'subject' => $subject ) )['rows'];
		$this->assertCount( 1, $rows, $subject );
		return $rows[0];
	}

	public function test_receipts_written_by_the_sender_settle_the_log_and_a_failure_is_resent(): void {
		$marker = Postbag_Config::from_constants()->get( 'marker_address' );
		$this->assertTrue( wp_mail( array( 'a@example.net', $marker ), 'Delivered', 'Hello', array( 'From: News <news@example.org>' ) ) );
		// The sender allows example.org only (tests/support/safe_env.py): this one is refused there.
		$this->assertTrue( wp_mail( array( 'b@example.net', $marker ), 'Refused', 'Hello', array( 'From: someone@elsewhere.test' ) ) );
		$this->assertCount( 2, $this->flush_uploaded() );
		$this->plugin->log_recorder()->write_pending(); // What the end of the request does.
		$this->assertSame( 'uploaded', $this->row( 'Delivered' )['status'] );

		$this->assertSame( 0, $this->plugin->console()->sync()['receipts'], 'moto answers 404: nothing settled yet' );

		$delivered = Postbag_Test_Python::run(
			array( dirname( __DIR__ ) . '/contract/deliver_batches.py' ),
			array(),
			(string) wp_json_encode( array( 'objects' => array_map( static fn( array $o ): string => base64_encode( $o['body'] ), $this->objects( 'queue/' ) ) ) )
		);
		$receipts = end( $delivered['receipts'] );
		$this->assertCount( 2, $receipts );
		$client = $this->plugin->make_s3_client();
		foreach ( $receipts as $key => $receipt ) {
			$put = $client->put_object( $key, (string) wp_json_encode( $receipt ) );
			$this->assertTrue( $put->ok, $put->error );
		}

		$summary = $this->plugin->console()->sync();

		$this->assertSame( array(), $summary['errors'] );
		$this->assertSame( 2, $summary['receipts'] );
		$sent = $this->row( 'Delivered' );
		$this->assertSame( 'sent', $sent['status'] );
		$this->assertNotSame( '', $sent['message_id'] );
		$this->assertSame( $receipts[ $sent['receipt_key'] ]['mails'][0]['message_id'], $sent['message_id'] );
		$failed = $this->row( 'Refused' );
		$this->assertSame( 'failed', $failed['status'] );
		$this->assertStringContainsString( 'elsewhere.test', $failed['reason'] );

		$resent = $this->plugin->console()->resend( $failed['id'] );

		$this->assertIsArray( $resent );
		$requests = $this->objects( 'requests/redrive/' );
		$this->assertCount( 1, $requests );
		$request = json_decode( (string) reset( $requests )['body'], true );
		$this->assertSame( array( 'batch', $failed['batch_id'], array( $failed['mail_id'] ) ), array( $request['kind'], $request['id'], $request['mail_ids'] ) );
		$this->assertSame( 'AES256', reset( $requests )['sse'] );
		$this->assertSame( 'uploaded', $resent['status'] );
	}

	public function test_the_overview_reads_the_account_document_with_a_signed_get(): void {
		$this->assertNull( $this->plugin->console()->status()['account'] );
		$this->assertTrue( $this->plugin->console()->status()['config']['bucket_reachable'] );
		$put = $this->plugin->make_s3_client()->put_object( 'status/account.json', '{"version":1,"checked_at":"2026-11-30T00:00:00Z","max_send_rate":1,"max_24_hour_send":200,"sent_last_24_hours":3,"production_access":false,"sending_enabled":true}' );
		$this->assertTrue( $put->ok, $put->error );

		$status = $this->plugin->console()->status();

		$this->assertFalse( $status['account']['production_access'] );
		$this->assertSame( 200, $status['account']['max_24_hour_send'] );

		$this->plugin->remove_hooks();
		$this->switch_to( $this->plugin_for( self::closed_endpoint() ) );
		$this->assertFalse( $this->plugin->console()->status()['config']['bucket_reachable'], 'S3 unreachable' );
	}
}
