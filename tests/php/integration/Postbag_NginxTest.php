<?php
/**
 * A page behind nginx and PHP-FPM notifies 100 users: the harness of
 * bench/notify.php, kept from rotting.
 *
 * @package Postbag\Tests
 */

/**
 * The stack bench/notify.php measures (nginx, PHP-FPM with a real pool,
 * MariaDB, WordPress, moto's S3), serving one page that calls
 * postbag_notify() for the 100 users of a role: the page answers with a job
 * id, curl's times are there, the worker reports when its shutdown work is
 * over, and by then the job's parts and manifest are in the bucket, the
 * manifest counting 100 recipients. No timing is asserted.
 */
final class Postbag_NginxTest extends Postbag_Test_Notify_Site_Case {

	const USERS = 100;

	public function test_a_page_notifying_100_users_answers_and_its_job_lands(): void {
		$this->assertTrue( function_exists( 'postbag_notify' ), 'the plugin defines postbag_notify()' );
		$http = $this->site->request( array( 'role' => Postbag_Test_Subscribers::role( self::USERS ) ), 'smoke', 30 );
		$this->assertSame( 200, $http['status'], $http['error'] . $http['body'] . $this->site->logs() );
		$this->assertMatchesRegularExpression( '/^job \S+$/', $http['body'], $this->site->logs() );
		$this->assertGreaterThan( 0.0, $http['ttfb'], 'curl timed the first byte' );
		$this->assertGreaterThanOrEqual( $http['ttfb'], $http['total'] );

		$report = $this->site->report( 'smoke', 30 );
		$this->assertNotNull( $report, 'the worker finished its shutdown work; ' . $this->site->logs() );
		$this->assertGreaterThan( 0, $report['peak_bytes'] );

		$job     = substr( $http['body'], 4 );
		$objects = $this->objects( "jobs/$job/" );
		$this->assertArrayHasKey( "jobs/$job/manifest.json", $objects, 'the manifest was uploaded after the response' );
		$manifest = json_decode( $objects[ "jobs/$job/manifest.json" ]['body'], true, 512, JSON_THROW_ON_ERROR );
		$this->assertSame( $job, $manifest['job_id'] );
		$this->assertSame( self::USERS, $manifest['recipients'] );
		$this->assertSame( self::USERS, array_sum( array_column( $manifest['parts'], 'rows' ) ) );
		$this->assertSame(
			array_column( $manifest['parts'], 'key' ),
			array_values( array_diff( array_keys( $objects ), array( "jobs/$job/manifest.json" ) ) ),
			'every part the manifest names is in the bucket, and nothing else'
		);
	}
}
