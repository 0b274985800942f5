<?php
/**
 * postbag_job_status() and postbag_cancel_job() against moto's S3, through the real client.
 *
 * @package Postbag\Tests
 */

/**
 * One job from the call to the bucket and back: its status from the spool,
 * "uploaded" while the sender has written no status (moto answers 404), the
 * sender's status.json read back through the SigV4-signed GetObject, then a
 * cancel put as `jobs/<job_id>/cancel`; and a cancel made while S3 is
 * unreachable, spooled and put by the retry.
 *
 * @covers Postbag_Jobs
 * @covers Postbag_Job_Cancels
 * @covers Postbag_S3_Client
 */
final class Postbag_JobStatusLiveTest extends Postbag_Test_Live_Case {

	private static function job(): array {
		return array(
			'recipients' => array( array( 'email' => 'a@example.net' ), array( 'email' => 'b@example.net' ) ),
			'subject'    => 'New post',
			'html'       => '<p>Hi {{ recipient.email }}</p>',
			'from'       => 'news@example.org',
		);
	}

	public function test_status_through_each_phase_then_a_cancel_in_the_bucket(): void {
		$job_id = postbag_notify( self::job() );
		$this->assertIsString( $job_id );
		$this->assertSame( 'streaming', postbag_job_status( $job_id )['state'] );

		$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['uploaded'] );
		$this->assertArrayHasKey( "jobs/$job_id/manifest.json", $this->objects( 'jobs/' ) );
		$this->assertSame(
			array(
				'job_id' => $job_id,
				'cancel' => null,
				'state'  => 'uploaded',
				'source' => 'sender',
			),
			postbag_job_status( $job_id ),
			'no status.json yet: not started'
		);

		// What the sender's progress writes after a chunk (docs/job-format.md, "Progress").
		$doc = array(
			'job_id'        => $job_id,
			'state'         => 'sending',
			'recipients'    => 2,
			'sent'          => 1,
			'duplicate'     => 0,
			'failed'        => 0,
			'suppressed'    => 0,
			'cancelled'     => 0,
			'remaining'     => 1,
			'rate'          => 0.5,
			'started_at'    => '2026-11-29T09:00:02Z',
			'updated_at'    => '2026-11-29T09:00:04Z',
			'estimated_end' => '2026-11-29T09:00:06Z',
		);
		$put = $this->plugin->make_s3_client()->put_object( "jobs/$job_id/status.json", (string) wp_json_encode( $doc ) );
		$this->assertTrue( $put->ok, $put->error );
		$this->assertSame(
			$doc + array(
				'cancel' => null,
				'source' => 'sender',
			),
			postbag_job_status( $job_id )
		);

		$this->assertTrue( postbag_cancel_job( $job_id ) );
		$this->assertSame( array( array( $job_id, 'bucket' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$cancel = $this->objects( 'jobs/' )[ "jobs/$job_id/cancel" ];
		$this->assertSame( $job_id, json_decode( $cancel['body'], true )['job_id'] );
		$this->assertSame( 'AES256', $cancel['sse'] );
		$this->assertSame( 'stored', postbag_job_status( $job_id )['cancel'] );
	}

	public function test_a_job_cancelled_before_its_upload_never_reaches_the_bucket(): void {
		$job_id = postbag_notify( self::job() );
		$this->assertTrue( postbag_cancel_job( $job_id ) );
		$this->plugin->flusher()->on_shutdown();

		$this->assertSame( array(), $this->objects( 'jobs/' ) );
		$this->assertSame( array( array( $job_id, 'spool' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertSame( 'cancelled', postbag_job_status( $job_id )['state'] );
	}

	public function test_a_cancel_made_while_s3_is_unreachable_is_put_by_the_retry(): void {
		$job_id = postbag_notify( self::job() );
		$this->plugin->jobs()->stream_pending();

		$this->plugin->remove_hooks();
		$this->switch_to( $this->plugin_for( self::closed_endpoint() ) );
		$this->assertTrue( postbag_cancel_job( $job_id ), 'recorded, waiting for S3' );
		$status = postbag_job_status( $job_id );
		$this->assertInstanceOf( WP_Error::class, $status, 'S3 cannot answer' );
		$this->assertSame( 'postbag_s3_unavailable', $status->get_error_code() );
		$this->assertSame( array(), $this->fired_with( 'postbag_job_cancelled' ) );

		$this->plugin->remove_hooks();
		$this->switch_to( $this->plugin_for( self::$aws->endpoint ) );
		$this->plugin->jobs()->stream_pending( null, true ); // The retry, its backoff ignored.
		$this->assertSame( array( array( $job_id, 'bucket' ) ), $this->fired_with( 'postbag_job_cancelled' ) );
		$this->assertArrayHasKey( "jobs/$job_id/cancel", $this->objects( 'jobs/' ) );
	}
}
