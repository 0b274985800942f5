<?php
/**
 * Scheduled sends through the real stack: a page behind nginx and PHP-FPM,
 * a site in Europe/Berlin, moto's S3.
 *
 * @package Postbag\Tests
 */

/**
 * A page schedules a notify job and two mails for "08:00" ten days ahead on a
 * site whose time zone is Europe/Berlin: the job's manifest and the mails'
 * batch reach the bucket after the response (nothing waits in WordPress),
 * carrying that wall time in UTC; the batch no longer carries the header.
 *
 * @covers Postbag_Send_Time
 * @covers Postbag_Jobs
 * @covers Postbag_Interceptor
 */
final class Postbag_ScheduleLiveTest extends Postbag_Test_Notify_Site_Case {

	const USERS = 3;

	/** @var string|false|null The site's zone before the test; null: not changed. */
	private $zone = null;

	protected function setUp(): void {
		parent::setUp();
		$this->zone = get_option( 'timezone_string' );
		update_option( 'timezone_string', 'Europe/Berlin' ); // Read by the PHP-FPM workers from the shared database.
	}

	protected function tearDown(): void {
		if ( null !== $this->zone ) {
			update_option( 'timezone_string', (string) $this->zone );
		}
		parent::tearDown();
	}

	public function test_a_page_schedules_a_job_and_mails_at_a_berlin_wall_time_stored_in_utc(): void {
		$day      = gmdate( 'Y-m-d', time() + 10 * DAY_IN_SECONDS );
		$expected = ( new DateTimeImmutable( "$day 08:00", new DateTimeZone( 'Europe/Berlin' ) ) )->setTimezone( new DateTimeZone( 'UTC' ) )->format( 'Y-m-d\TH:i:s\Z' );

		$http = $this->site->request(
			array(
				'role'    => Postbag_Test_Subscribers::role( self::USERS ),
				'send_at' => "$day 08:00",
			),
			'job',
			30
		);
		$this->assertMatchesRegularExpression( '/^job \S+$/', $http['body'], $http['error'] . $this->site->logs() );
		$this->assertNotNull( $this->site->report( 'job', 30 ), $this->site->logs() );
		$job      = substr( $http['body'], 4 );
		$objects  = $this->objects( "jobs/$job/" );
		$this->assertArrayHasKey( "jobs/$job/manifest.json", $objects, 'uploaded at once: held by the sender, not by WordPress' );
		$manifest = json_decode( $objects[ "jobs/$job/manifest.json" ]['body'], true, 512, JSON_THROW_ON_ERROR );
		$this->assertSame( $expected, $manifest['send_at'], "08:00 in Berlin on $day" );
		$this->assertSame( self::USERS, $manifest['recipients'] );

		$http = $this->site->request(
			array(
				'mails'   => 2,
				'send_at' => "$day 08:00",
			),
			'mails',
			30
		);
		$this->assertSame( 'queued 2', $http['body'], $http['error'] . $this->site->logs() );
		$this->assertNotNull( $this->site->report( 'mails', 30 ), $this->site->logs() );
		$batches = $this->objects( 'queue/' );
		$this->assertCount( 1, $batches, 'the same send_at: one batch' );
		$batch = json_decode( reset( $batches )['body'], true, 512, JSON_THROW_ON_ERROR );
		$this->assertSame( $expected, $batch['send_at'] );
		$this->assertCount( 2, $batch['emails'] );
		$this->assertArrayNotHasKey( 'headers', $batch['meta'], 'X-Postbag-Send-At is not sent' );
	}
}
