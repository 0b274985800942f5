<?php
/**
 * Scheduled sends from WordPress: times read as the site means them, jobs and
 * batches carrying them, cancel and reschedule through control objects, the
 * site's listing and its REST routes.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Send_Time
 * @covers Postbag_Schedules
 * @covers Postbag_Schedule_Controls
 * @covers Postbag_Schedule_Rest
 * @covers Postbag_Interceptor
 * @covers Postbag_Queue
 * @covers Postbag_Job_Format_V2
 */
final class Postbag_ScheduleTest extends Postbag_Unit_Test_Case {

	/** A batch or job id this site may not have recorded: control objects are put all the same. */
	const BATCH_ID = '6f1c2f4e-2b0a-4d7e-9b1e-0c9d8a7b6c5d';

	/** @var array[] What `postbag_schedule_changed` received. */
	private $changed = array();

	protected function setUp(): void {
		parent::setUp();
		// The site's zone for this test only (hooks are restored afterwards).
		add_filter(
			'pre_option_timezone_string',
			static function (): string {
				return 'Europe/Berlin';
			}
		);
	}

	protected function tearDown(): void {
		wp_set_current_user( 0 );
		$GLOBALS['wp_rest_server'] = null; // The next test's server registers its own routes.
		parent::tearDown();
	}

	/**
	 * Input => the UTC instant stored, in Europe/Berlin, at a given now.
	 *
	 * @return array<string, array{0: mixed, 1: string, 2: ?string}>
	 */
	public function times(): array {
		return array(
			'winter wall time'                    => array( '2027-01-10 08:00', '2026-12-01T00:00:00Z', '2027-01-10T07:00:00Z' ),
			'summer wall time'                    => array( '2027-07-05 08:00', '2027-06-01T00:00:00Z', '2027-07-05T06:00:00Z' ),
			'spring gap: 02:30 does not exist'    => array( '2027-03-28 02:30', '2027-03-01T00:00:00Z', '2027-03-28T01:30:00Z' ), // 03:30 CEST: as far past the change as meant.
			'spring gap: 02:00, its start'        => array( '2027-03-28 02:00', '2027-03-01T00:00:00Z', '2027-03-28T01:00:00Z' ),
			'spring: 03:00, just after'           => array( '2027-03-28 03:00', '2027-03-01T00:00:00Z', '2027-03-28T01:00:00Z' ),
			'autumn: 02:30 twice, the first'      => array( '2027-10-31 02:30', '2027-10-01T00:00:00Z', '2027-10-31T00:30:00Z' ), // 02:30 CEST.
			'autumn: 02:00 twice, the first'      => array( '2027-10-31 02:00', '2027-10-01T00:00:00Z', '2027-10-31T00:00:00Z' ),
			'autumn: the second, by its offset'   => array( '2027-10-31T02:30:00+01:00', '2027-10-01T00:00:00Z', '2027-10-31T01:30:00Z' ),
			'autumn: 03:00, once'                 => array( '2027-10-31 03:00', '2027-10-01T00:00:00Z', '2027-10-31T02:00:00Z' ),
			'UTC stays UTC'                       => array( '2026-12-01T09:00:00Z', '2026-11-22T07:00:00Z', '2026-12-01T09:00:00Z' ),
			'an explicit offset is kept'          => array( '2027-01-10T08:00:00-05:00', '2026-12-01T00:00:00Z', '2027-01-10T13:00:00Z' ),
			'relative, from the clock'            => array( 'next monday 08:00', '2026-11-22T07:00:00Z', '2026-11-23T07:00:00Z' ),
			'a Unix timestamp'                    => array( 1795334400, '2026-11-22T07:00:00Z', '2026-11-22T08:00:00Z' ),
			'a DateTime in New York'              => array( new DateTimeImmutable( '2026-11-23 08:00', new DateTimeZone( 'America/New_York' ) ), '2026-11-22T07:00:00Z', '2026-11-23T13:00:00Z' ),
			'the past is now'                     => array( '2026-11-22 07:59', '2026-11-22T07:00:00Z', null ), // 06:59Z.
			'now is now'                          => array( 1795330800, '2026-11-22T07:00:00Z', null ),
			'exactly 90 days ahead'               => array( 1795330800 + 90 * DAY_IN_SECONDS, '2026-11-22T07:00:00Z', '2027-02-20T07:00:00Z' ),
		);
	}

	/**
	 * @dataProvider times
	 *
	 * @param mixed       $input    What the caller passes.
	 * @param string      $now      The clock.
	 * @param string|null $expected UTC RFC 3339, or null for now.
	 */
	public function test_a_time_is_read_in_the_site_zone_and_stored_in_utc( $input, string $now, ?string $expected ): void {
		$times = new Postbag_Send_Time(
			static function () use ( $now ): int {
				return strtotime( $now );
			}
		);
		$this->assertSame( $expected, $times->at( $input, 'send_at' ) );
	}

	public function test_text_read_again_is_the_same_instant_and_relative_text_follows_the_clock(): void {
		$times = new Postbag_Send_Time(
			function (): int {
				return $this->now;
			}
		);
		$this->assertSame( '2026-11-23T07:00:00Z', $times->at( '2026-11-23 08:00', 'send_at' ) );
		$this->assertSame( '2026-11-23T07:00:00Z', $times->at( 'next monday 08:00', 'send_at' ) );
		$this->now += 7 * DAY_IN_SECONDS;
		$this->assertSame( '2026-11-30T07:00:00Z', $times->at( 'next monday 08:00', 'send_at' ), 'counted from the new now' );
		$this->assertNull( $times->at( '2026-11-23 08:00', 'send_at' ), 'the same text, now past' );
		add_filter(
			'pre_option_timezone_string',
			static function (): string {
				return 'America/New_York';
			},
			11
		);
		$this->assertSame( '2026-12-01T13:00:00Z', $times->at( '2026-12-01 08:00', 'send_at' ), 'another blog\'s zone is another instant' );
	}

	public function test_a_site_with_a_fixed_offset_has_no_transitions_to_resolve(): void {
		$times = new Postbag_Send_Time(
			function (): int {
				return $this->now;
			},
			new DateTimeZone( '+05:30' ) // What wp_timezone() gives for a UTC+5:30 chosen as an offset, not a city.
		);
		$this->assertSame( '2026-11-23T02:30:00Z', $times->at( '2026-11-23 08:00', 'send_at' ) );
	}

	public function test_a_window_that_started_starts_now_and_keeps_its_end(): void {
		$times = new Postbag_Send_Time(
			function (): int {
				return $this->now;
			}
		);
		$this->assertSame(
			array(
				'start' => '2026-11-22T07:00:00Z',
				'end'   => '2026-11-22T17:00:00Z',
			),
			$times->window( array( '2026-11-22 06:00', '2026-11-22 18:00' ), 'send_between' ),
			'wall times in Berlin; the start is past'
		);
		$this->assertSame(
			array(
				'start' => '2026-11-23T07:00:00Z',
				'end'   => '2026-11-23T11:00:00Z',
			),
			$times->window(
				array(
					'start' => '2026-11-23T07:00:00Z',
					'end'   => '2026-11-23T11:00:00Z',
				),
				'send_between'
			),
			'start and end by name'
		);
	}

	public function test_a_scheduled_notify_job_is_uploaded_at_once_with_its_utc_send_at(): void {
		$job_id = postbag_notify( self::job( array( 'send_at' => '2026-11-23 08:00' ) ) );

		$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['uploaded'], 'nothing waits in WordPress' );
		$manifest = $this->manifest( $job_id );
		$this->assertSame( '2026-11-23T07:00:00Z', $manifest['send_at'], '08:00 in Berlin' );
		$this->assertArrayNotHasKey( 'send_between', $manifest );
		$this->assertSame( array( 'send_at' => '2026-11-23T07:00:00Z', 'send_between' => null ), $this->fired_with( 'postbag_job_scheduled' )[0][1] );

		$listed = postbag_scheduled();
		$this->assertCount( 1, $listed );
		$this->assertSame( array( 'job', $job_id, '2026-11-23T07:00:00Z', 'scheduled', null ), array( $listed[0]['kind'], $listed[0]['id'], $listed[0]['send_at'], $listed[0]['state'], $listed[0]['request'] ) );

		$this->now += DAY_IN_SECONDS;
		$this->assertSame( 'due', postbag_scheduled()[0]['state'], 'its time came: the sender has it' );
	}

	public function test_a_windowed_job_carries_its_window_and_no_send_at(): void {
		$job_id = postbag_notify( self::job( array( 'send_between' => array( '2026-11-23 08:00', '2026-11-23 20:00' ) ) ) );
		$this->plugin->jobs()->stream_pending();

		$manifest = $this->manifest( $job_id );
		$this->assertNull( $manifest['send_at'] );
		$this->assertSame(
			array(
				'start' => '2026-11-23T07:00:00Z',
				'end'   => '2026-11-23T19:00:00Z',
			),
			$manifest['send_between']
		);
		$this->assertSame( array( 'version', 'kind', 'job_id', 'site', 'created_at', 'send_at', 'send_between', 'meta' ), array_slice( array_keys( $manifest ), 0, 8 ) );
		$this->assertSame( '2026-11-23T07:00:00Z', postbag_scheduled()[0]['send_between']['start'] );
	}

	public function test_a_job_without_a_time_is_sent_now_and_not_listed(): void {
		$job_id = postbag_notify( self::job( array( 'send_at' => '2020-01-01 00:00' ) ) );
		$this->plugin->jobs()->stream_pending();

		$this->assertNull( $this->manifest( $job_id )['send_at'], 'a time in the past means now' );
		$this->assertSame( array(), $this->fired_with( 'postbag_job_scheduled' ) );
		$this->assertSame( array(), postbag_scheduled() );
	}

	public function test_mails_are_batched_by_send_at_and_the_header_is_not_sent(): void {
		$to = array( 'zoe@example.net', self::MARKER );
		$this->assertTrue( wp_mail( $to, 'A', 'Body', array( 'X-Postbag-Send-At: 2026-11-23 08:00', 'X-Campaign: digest' ) ) );
		$this->assertTrue( wp_mail( $to, 'B', 'Body', array( 'x-postbag-send-at: 2026-11-23T07:00:00Z', 'X-Campaign: digest' ) ) );
		$this->assertTrue( wp_mail( $to, 'C', 'Body', array( 'X-Postbag-Send-At: 2026-11-24 08:00', 'X-Campaign: digest' ) ) );
		$this->assertTrue( wp_mail( $to, 'D', 'Body', array( 'X-Campaign: digest' ) ) );

		$by_subjects = array();
		foreach ( $this->flush_batches() as $batch ) {
			$by_subjects[ implode( ',', array_column( $batch['emails'], 'subject' ) ) ] = $batch;
			$this->assertSame( array( array( 'name' => 'X-Campaign', 'value' => 'digest' ) ), $batch['meta']['headers'], 'the header is an instruction, never sent' );
		}
		ksort( $by_subjects );
		$this->assertSame( array( 'A,B', 'C', 'D' ), array_keys( $by_subjects ), 'the same instant, however written, is one batch' );
		$this->assertSame( '2026-11-23T07:00:00Z', $by_subjects['A,B']['send_at'] );
		$this->assertSame( '2026-11-24T07:00:00Z', $by_subjects['C']['send_at'] );
		$this->assertArrayNotHasKey( 'send_at', $by_subjects['D'], 'a batch for now has no send_at, as before' );
		$this->assertSame( array( 'created_at', 'send_at', 'meta' ), array_slice( array_keys( $by_subjects['C'] ), 3, 3 ) );

		$scheduled = $this->fired_with( 'postbag_batch_scheduled' );
		$this->assertCount( 2, $scheduled );
		$listed = postbag_scheduled();
		$this->assertSame( array( 2, 1 ), array_column( $listed, 'mails' ) );
		$this->assertSame( array( $by_subjects['A,B']['batch_id'], $by_subjects['C']['batch_id'] ), array_column( $listed, 'id' ) );
	}

	public function test_a_loop_of_mails_with_relative_text_is_one_batch_not_one_a_second(): void {
		$to = array( 'zoe@example.net', self::MARKER );
		foreach ( array( 'A', 'B', 'C' ) as $subject ) {
			$this->assertTrue( wp_mail( $to, $subject, 'Body', array( 'X-Postbag-Send-At: +1 hour' ) ) );
			++$this->now; // A slow loop: each mail a second later.
		}
		$this->now += Postbag_Send_Time::RELATIVE_SECONDS;
		$this->assertTrue( wp_mail( $to, 'D', 'Body', array( 'X-Postbag-Send-At: +1 hour' ) ) );

		$batches = $this->flush_batches();

		$this->assertSame( array( 'A,B,C', 'D' ), array_map( static fn( array $b ): string => implode( ',', array_column( $b['emails'], 'subject' ) ), $batches ) );
		$this->assertSame( array( '2026-11-22T08:00:00Z', '2026-11-22T08:01:03Z' ), array_column( $batches, 'send_at' ), 'a minute later the clock counts again' );
	}

	public function test_the_filter_schedules_a_mail_without_the_header(): void {
		add_filter(
			'postbag_mail_send_at',
			static function ( $send_at, array $atts ) {
				return 'Digest' === $atts['subject'] ? new DateTimeImmutable( '2026-11-30T07:00:00Z' ) : $send_at;
			},
			10,
			2
		);
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Digest', 'Body' ) );

		$this->assertSame( '2026-11-30T07:00:00Z', $this->flush_batches()[0]['send_at'] );
	}

	/**
	 * @return array<string, array{0: string, 1: string}>
	 */
	public function bad_send_at_headers(): array {
		return array(
			'unreadable'        => array( 'X-Postbag-Send-At: after lunch', 'postbag_invalid_time' ),
			'a day that is not' => array( 'X-Postbag-Send-At: 2026-11-31 08:00', 'postbag_invalid_time' ),
			'91 days ahead'     => array( 'X-Postbag-Send-At: 2027-02-21T07:00:01Z', 'postbag_too_far_ahead' ),
		);
	}

	/**
	 * @dataProvider bad_send_at_headers
	 */
	public function test_a_bad_send_at_refuses_the_mail_through_wp_mail_failed( string $header, string $reason ): void {
		$this->assertFalse( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Hi', 'Body', array( $header ) ) );

		$this->assertSame( 0, $this->plugin->queue()->count() );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'refused, never sent now instead' );
		$this->assertCount( 1, $this->failures );
		$data = $this->failures[0]->get_error_data();
		$this->assertSame( array( $reason, 'X-Postbag-Send-At' ), array( $data['postbag_reason'], $data['postbag_field'] ) );
		$this->assertStringContainsString( 'X-Postbag-Send-At', $this->failures[0]->get_error_message() );
	}

	public function test_reschedule_a_job_puts_its_schedule_object(): void {
		$job_id = postbag_notify( self::job( array( 'send_at' => '2026-11-23 08:00' ) ) );
		$this->plugin->jobs()->stream_pending();
		$this->now += 60;

		$this->assertTrue( postbag_reschedule_job( $job_id, array( 'send_between' => array( '2026-11-24 08:00', '2026-11-24 12:00' ) ) ) );

		$this->assertSame(
			array(
				'version'      => 1,
				'send_at'      => null,
				'send_between' => array(
					'start' => '2026-11-24T07:00:00Z',
					'end'   => '2026-11-24T11:00:00Z',
				),
				'requested_at' => $this->object( "jobs/$job_id/schedule.json" )['requested_at'],
			),
			$this->object( "jobs/$job_id/schedule.json" )
		);
		$this->assertMatchesRegularExpression( '/^2026-11-22T07:01:00\.\d{3}Z$/', $this->object( "jobs/$job_id/schedule.json" )['requested_at'], 'to the millisecond: the sender orders requests by it' );
		$listed = postbag_scheduled()[0];
		$this->assertSame( array( null, '2026-11-24T07:00:00Z', 'scheduled', '2026-11-22T07:01:00Z' ), array( $listed['send_at'], $listed['send_between']['start'], $listed['state'], $listed['updated_at'] ) );
		$this->assertSame( array(), glob( $this->spool_dir . '/*.control.php' ), 'in the bucket: nothing kept' );

		$this->assertTrue( postbag_reschedule_job( $job_id, array( 'send_at' => null ) ) );
		$this->assertSame( array( null, null ), array_values( array_intersect_key( $this->object( "jobs/$job_id/schedule.json" ), array_flip( array( 'send_at', 'send_between' ) ) ) ), 'null: now' );
	}

	public function test_every_reschedule_request_the_plugin_writes_is_what_the_sender_reads(): void {
		$schema = new Postbag_Schema_Checker( dirname( __DIR__, 3 ) . '/fixtures/schedule-v1.schema.json' );
		$job_id = postbag_notify( self::job( array( 'send_at' => '2026-11-23 08:00' ) ) );
		$this->plugin->jobs()->stream_pending();
		$requests = array(
			"jobs/$job_id/schedule.json"                               => array( 'job', $job_id, array( 'send_between' => array( '2026-11-24 08:00', '2026-11-24 12:00' ) ) ),
			'control/batches/' . self::BATCH_ID . '/schedule.json' => array( 'batch', self::BATCH_ID, array( 'send_at' => '2026-11-25 08:00' ) ),
		);
		foreach ( $requests as $key => list( $kind, $id, $when ) ) {
			$this->assertTrue( 'job' === $kind ? postbag_reschedule_job( $id, $when ) : postbag_reschedule_mail_batch( $id, $when ) );
			$this->assertSame( array(), $schema->errors( $this->s3->objects[ $key ]['body'] ), $key );
			$this->assertTrue( 'job' === $kind ? postbag_reschedule_job( $id, array( 'send_at' => null ) ) : postbag_reschedule_mail_batch( $id, array( 'send_at' => null ) ) );
			$this->assertSame( array(), $schema->errors( $this->s3->objects[ $key ]['body'] ), "$key, now" );
		}
		$this->assertNotSame( array(), $schema->errors( '{"version":1,"send_at":null,"send_between":null}' ), 'the checker refuses what the sender refuses' );
	}

	public function test_a_job_rescheduled_before_its_manifest_left_gets_its_schedule_after_it(): void {
		$job_id = postbag_notify( self::job( array( 'send_at' => '2026-11-23 08:00' ) ) );

		$this->assertTrue( postbag_reschedule_job( $job_id, array( 'send_at' => '2026-11-24 08:00' ) ) );
		$this->assertSame( array(), $this->s3->calls, 'the sender would ignore a schedule for a job it does not hold yet' );
		$this->assertSame( 1, $this->plugin->schedule_controls()->run( true ) );
		$this->assertSame( array(), $this->s3->calls, 'still not while the job is in the spool, forced or not' );

		$this->plugin->jobs()->stream_pending();

		$calls = $this->s3->calls;
		$this->assertSame( array( "jobs/$job_id/manifest.json" ), $calls[ count( $calls ) - 2 ] );
		$this->assertSame( array( "jobs/$job_id/schedule.json" ), end( $calls ), 'right after the manifest' );
		$this->assertSame( '2026-11-24T07:00:00Z', $this->object( "jobs/$job_id/schedule.json" )['send_at'] );
		$this->assertSame( array(), glob( $this->spool_dir . '/*.control.php' ) );
	}

	public function test_control_objects_wait_in_the_spool_while_s3_is_down_and_the_latest_wins(): void {
		$this->s3->fail_pattern = '#^control/#';

		$this->assertTrue( postbag_reschedule_mail_batch( self::BATCH_ID, array( 'send_at' => '2026-11-25 08:00' ) ), 'recorded: S3 being down is not the caller\'s error' );
		$this->now += 30;
		$this->assertTrue( postbag_reschedule_mail_batch( self::BATCH_ID, array( 'send_at' => '2026-11-26 08:00' ) ) );
		$this->assertTrue( postbag_cancel_mail_batch( self::BATCH_ID ) );

		$this->assertCount( 2, glob( $this->spool_dir . '/*.control.php' ), 'one per object: the second reschedule replaced the first' );
		$pending = $this->plugin->schedule_controls()->pending();
		$this->assertSame( array( 1, 1 ), array_column( $pending, 'attempts' ) );
		$this->assertStringContainsString( 'HTTP 503', $pending[ 'control/batches/' . self::BATCH_ID . '/cancel' ]['last_error'] );
		$this->assertNotFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'a retry is planned' );

		$this->s3->fail_pattern = null;
		$this->assertSame( 2, $this->plugin->schedule_controls()->run(), 'backed off: only when due' );
		$this->assertSame( array(), array_intersect_key( $this->s3->objects, $pending ) );
		$this->now += 120;
		do_action( Postbag_Spool_Retry::HOOK );

		$this->assertSame( array(), glob( $this->spool_dir . '/*.control.php' ) );
		$this->assertSame( '2026-11-26T07:00:00Z', $this->object( 'control/batches/' . self::BATCH_ID . '/schedule.json' )['send_at'], 'the later request' );
		$moved = $this->object( 'control/batches/' . self::BATCH_ID . '/schedule.json' )['requested_at'];
		$this->assertMatchesRegularExpression( '/^2026-11-22T07:00:30\.\d{3}Z$/', $moved );
		$cancel = $this->object( 'control/batches/' . self::BATCH_ID . '/cancel' );
		$this->assertSame( array( 1, self::BATCH_ID ), array( $cancel['version'], $cancel['batch_id'] ) );
		// Later within the second (equal only at .999, where a second cannot hold more).
		$this->assertGreaterThanOrEqual( $moved, $cancel['requested_at'], 'the cancel came after the move in the same second: its time says so' );
		$this->assertStringStartsWith( '2026-11-22T07:00:30.', $cancel['requested_at'] );
	}

	public function test_a_batch_in_the_spool_that_was_not_scheduled_is_not_cancelled(): void {
		$this->s3->fail_pattern = '#^queue/#';
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Now', 'Body' ) );
		$this->plugin->flush();
		$batch_id = (string) $this->fired_with( 'postbag_batch_spooled' )[0][0];
		$this->assertTrue( $this->plugin->spool()->has( $batch_id ), 'waiting out an S3 outage' );

		$error = postbag_cancel_mail_batch( $batch_id );

		$this->assertSame( array( 'postbag_not_scheduled', array( 'field' => 'batch_id' ) ), array( $error->get_error_code(), $error->get_error_data() ) );
		$this->assertTrue( $this->plugin->spool()->has( $batch_id ), 'still to be sent' );
		$this->assertSame( array(), preg_grep( '#^control/#', array_keys( $this->s3->objects ) ) );
		wp_set_current_user( 1 );
		$response = rest_do_request( self::request( 'POST', "/postbag/v1/batches/$batch_id/cancel", array() ) );
		$this->assertSame( 409, $response->get_status(), (string) wp_json_encode( $response->get_data() ) );
	}

	public function test_a_control_that_cannot_be_spooled_is_refused(): void {
		$this->plugin->remove_hooks();
		file_put_contents( $this->temp_dir . '/file', 'not a directory' );
		$this->plugin = new Postbag_Plugin(
			new Postbag_Config( array( 'bucket' => 'b' ) ),
			$this->s3,
			function (): int {
				return $this->now;
			},
			new Postbag_Spool( $this->temp_dir . '/file/spool' )
		);
		Postbag_Plugin::replace( $this->plugin );

		$result = postbag_cancel_mail_batch( self::BATCH_ID );

		$this->assertSame( array(), $this->s3->calls, 'nothing put that could not be kept' );
		$this->assertInstanceOf( WP_Error::class, $result );
		$this->assertSame( array( 'postbag_spool_unavailable', array( 'field' => 'spool' ) ), array( $result->get_error_code(), $result->get_error_data() ) );
	}

	public function test_cancel_a_scheduled_batch_drops_it_from_the_spool_and_the_listing_says_so(): void {
		add_action(
			'postbag_schedule_changed',
			function ( ...$args ): void {
				$this->changed[] = $args;
			},
			10,
			4
		);
		$this->s3->fail_pattern = '#^queue/#';
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Later', 'Body', array( 'X-Postbag-Send-At: 2026-11-23 08:00' ) ) );
		$this->plugin->flush();
		$batch_id = $this->fired_with( 'postbag_batch_scheduled' )[0][0];
		$this->assertTrue( $this->plugin->spool()->has( $batch_id ), 'its upload failed: spooled' );

		$this->assertTrue( postbag_cancel_mail_batch( $batch_id ) );

		$this->assertFalse( $this->plugin->spool()->has( $batch_id ), 'never uploaded now' );
		$this->assertArrayHasKey( "control/batches/$batch_id/cancel", $this->s3->objects, 'and the sender told, in case an upload raced' );
		$this->assertSame( 'cancelled', postbag_scheduled()[0]['state'] );
		$this->assertArrayNotHasKey( 'mail_ids', postbag_scheduled()[0], 'the listing stays small' );
		$this->assertSame(
			array(
				'batch',
				$batch_id,
				array(
					'state' => 'cancelled',
					'spool' => true,
				),
				$this->fired_with( 'postbag_batch_scheduled' )[0][1],
			),
			$this->changed[0],
			'the email log can mark its mails: taken from the spool, never sent'
		);
		$this->plugin->log_recorder()->write_pending();
		$this->assertSame( 'cancelled', $this->plugin->log()->get( $this->fired_with( 'postbag_batch_scheduled' )[0][1][0] )['status'], 'settled: no result will come for a batch the sender never had' );

		$error = postbag_reschedule_mail_batch( $batch_id, array( 'send_at' => '2026-11-24 08:00' ) );
		$this->assertSame( array( 'postbag_cancelled', array( 'field' => 'batch_id' ) ), array( $error->get_error_code(), $error->get_error_data() ) );

		$this->now += 8 * DAY_IN_SECONDS;
		do_action( Postbag_Spool_Retry::HOURLY_HOOK );
		$this->assertCount( 1, postbag_scheduled(), 'kept a week after its time' );
		++$this->now;
		do_action( Postbag_Spool_Retry::HOURLY_HOOK );
		$this->assertSame( array(), postbag_scheduled(), 'pruned a week after' );
	}

	public function test_cancel_a_scheduled_job_in_the_bucket(): void {
		$job_id = postbag_notify( self::job( array( 'send_at' => '2026-11-23 08:00' ) ) );
		$this->plugin->jobs()->stream_pending();

		$this->assertTrue( postbag_cancel_job( $job_id ) );

		$this->assertArrayHasKey( "jobs/$job_id/cancel", $this->s3->objects );
		$this->assertSame( 'cancelled', postbag_scheduled()[0]['state'] );
		$this->assertInstanceOf( WP_Error::class, postbag_reschedule_job( $job_id, array( 'send_at' => '2026-11-24 08:00' ) ), 'a cancelled job is not moved' );
	}

	/**
	 * @return array<string, array{0: string, 1: mixed, 2: mixed, 3: string, 4: string}>
	 */
	public function bad_reschedules(): array {
		$ok = array( 'send_at' => '2026-11-23T08:00:00Z' );
		return array(
			'job id with a slash'         => array( 'job', 'a/b', $ok, 'postbag_invalid_job_id', 'job_id' ),
			'batch id going up'           => array( 'batch', '../queue', $ok, 'postbag_invalid_batch_id', 'batch_id' ),
			'no time'                     => array( 'job', self::BATCH_ID, array(), 'postbag_invalid_schedule', 'send_at' ),
			'both times'                  => array( 'job', self::BATCH_ID, $ok + array( 'send_between' => array( '2026-11-23T08:00:00Z', '2026-11-23T09:00:00Z' ) ), 'postbag_invalid_schedule', 'send_at' ),
			'another key'                 => array( 'job', self::BATCH_ID, array( 'at' => '2026-11-23T08:00:00Z' ), 'postbag_invalid_schedule', 'send_at' ),
			'unreadable time'             => array( 'job', self::BATCH_ID, array( 'send_at' => 'later' ), 'postbag_invalid_time', 'send_at' ),
			'too far ahead'               => array( 'batch', self::BATCH_ID, array( 'send_at' => '2027-03-01T00:00:00Z' ), 'postbag_too_far_ahead', 'send_at' ),
			'window ends before it starts' => array( 'job', self::BATCH_ID, array( 'send_between' => array( '2026-11-23T09:00:00Z', '2026-11-23T08:00:00Z' ) ), 'postbag_invalid_schedule', 'send_between.end' ),
			'a window for a batch'        => array( 'batch', self::BATCH_ID, array( 'send_between' => array( '2026-11-23T08:00:00Z', '2026-11-23T09:00:00Z' ) ), 'postbag_invalid_schedule', 'send_between' ),
		);
	}

	/**
	 * @dataProvider bad_reschedules
	 *
	 * @param string $kind   'job' or 'batch'.
	 * @param mixed  $id     Id.
	 * @param mixed  $when   New time.
	 * @param string $code   Error code.
	 * @param string $field  Field named.
	 */
	public function test_a_bad_reschedule_is_refused_naming_the_field_and_puts_nothing( string $kind, $id, $when, string $code, string $field ): void {
		$error = $this->plugin->schedules()->reschedule( $kind, $id, $when );

		$this->assertInstanceOf( WP_Error::class, $error );
		$this->assertSame( array( $code, array( 'field' => $field ) ), array( $error->get_error_code(), $error->get_error_data() ), $error->get_error_message() );
		$this->assertSame( array(), $this->s3->calls );
		$this->assertSame( array(), glob( $this->spool_dir . '/*.control.php' ) ?: array() );
	}

	/**
	 * @return array<string, array{0: string, 1: string, 2: array}>
	 */
	public function routes(): array {
		return array(
			'list'             => array( 'GET', '/postbag/v1/scheduled', array() ),
			'reschedule job'   => array( 'POST', '/postbag/v1/jobs/' . self::BATCH_ID . '/schedule', array( 'send_at' => '2026-11-23 08:00' ) ),
			'reschedule batch' => array( 'POST', '/postbag/v1/batches/' . self::BATCH_ID . '/schedule', array( 'send_at' => '2026-11-23 08:00' ) ),
			'cancel batch'     => array( 'POST', '/postbag/v1/batches/' . self::BATCH_ID . '/cancel', array() ),
		);
	}

	/**
	 * @dataProvider routes
	 */
	public function test_only_administrators_may_use_the_routes( string $method, string $route, array $body ): void {
		foreach ( array(
			401 => 0,
			403 => self::subscriber(),
			200 => 1,
		) as $status => $user ) {
			wp_set_current_user( $user );
			$response = rest_do_request( self::request( $method, $route, $body ) );
			$this->assertSame( $status, $response->get_status(), sprintf( 'user %d: %s', $user, wp_json_encode( $response->get_data() ) ) );
			if ( 200 !== $status ) {
				$this->assertSame( array(), $this->s3->calls, 'refused before anything is done' );
			}
		}
		$this->assertTrue( 'GET' === $method || array() !== $this->s3->calls, 'the administrator\'s request went through' );
	}

	public function test_the_routes_reschedule_list_and_refuse_a_bad_time_with_400(): void {
		wp_set_current_user( 1 );
		$job_id = postbag_notify( self::job( array( 'send_at' => '2026-11-23 08:00' ) ) );
		$this->plugin->jobs()->stream_pending();

		$response = rest_do_request( self::request( 'POST', "/postbag/v1/jobs/$job_id/schedule", array( 'send_between' => array( '2026-11-23 08:00', '2026-11-23 18:00' ) ) ) );
		$this->assertSame( array( 200, array( 'ok' => true ) ), array( $response->get_status(), $response->get_data() ) );
		$this->assertSame( '2026-11-23T17:00:00Z', $this->object( "jobs/$job_id/schedule.json" )['send_between']['end'] );

		$listed = rest_do_request( self::request( 'GET', '/postbag/v1/scheduled', array() ) )->get_data()['scheduled'];
		$this->assertSame( array( $job_id ), array_column( $listed, 'id' ) );
		$this->assertSame( '2026-11-23T07:00:00Z', $listed[0]['send_between']['start'] );

		$response = rest_do_request( self::request( 'POST', "/postbag/v1/jobs/$job_id/schedule", array( 'send_at' => '2027-06-01 08:00' ) ) );
		$this->assertSame( 400, $response->get_status() );
		$this->assertSame( array( 'postbag_too_far_ahead', 'send_at' ), array( $response->get_data()['code'], $response->get_data()['data']['field'] ) );

		$response = rest_do_request( self::request( 'POST', '/postbag/v1/batches/a..b%2Fc/cancel', array() ) );
		$this->assertSame( 404, $response->get_status(), 'not an id: no route' );
	}

	/**
	 * @param string $method HTTP method.
	 * @param string $route  Route.
	 * @param array  $body   JSON body.
	 */
	private static function request( string $method, string $route, array $body ): WP_REST_Request {
		$request = new WP_REST_Request( $method, $route );
		if ( $body ) {
			$request->set_header( 'Content-Type', 'application/json' );
			$request->set_body( wp_json_encode( $body ) );
		}
		return $request;
	}

	/**
	 * @param array $changes Arguments besides a valid job's.
	 */
	private static function job( array $changes ): array {
		return array_merge(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ) ),
				'subject'    => 'Digest',
				'html'       => '<p>This week</p>',
				'from'       => 'news@example.org',
			),
			$changes
		);
	}

	/**
	 * @param string $job_id Job id.
	 */
	private function manifest( string $job_id ): array {
		return $this->object( "jobs/$job_id/manifest.json" );
	}

	/**
	 * @param string $key Object key.
	 */
	private function object( string $key ): array {
		$this->assertArrayHasKey( $key, $this->s3->objects );
		return json_decode( $this->s3->objects[ $key ]['body'], true );
	}
}
