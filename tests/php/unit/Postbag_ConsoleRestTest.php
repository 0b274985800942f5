<?php
/**
 * The postbag/v1 REST API: permissions on every route, and what each console route does.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * Requests go through the real REST server (rest_do_request), rebuilt for
 * each test so its routes call this test's plugin.
 *
 * @covers Postbag_Rest
 * @covers Postbag_Console
 */
final class Postbag_ConsoleRestTest extends Postbag_Unit_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		self::empty_mail_log();
		$GLOBALS['wp_rest_server'] = null; // Routes registered again, by this test's plugin.
		wp_set_current_user( 1 ); // The administrator the install created.
	}

	protected function tearDown(): void {
		wp_set_current_user( 0 );
		$GLOBALS['wp_rest_server'] = null;
		parent::tearDown();
	}

	/**
	 * @param string $method HTTP method.
	 * @param string $path   Route under /postbag/v1.
	 * @param array  $params Parameters.
	 */
	private function call( string $method, string $path, array $params = array() ): WP_REST_Response {
		$request = new WP_REST_Request( $method, '/postbag/v1' . $path );
		foreach ( $params as $name => $value ) {
			$request->set_param( $name, $value );
		}
		return rest_do_request( $request );
	}

	/**
	 * Every postbag/v1 route and method but the public unsubscribe, with a
	 * path that matches it and parameters that pass its validation (the REST
	 * server checks them before permissions): routes other code adds are
	 * covered too.
	 *
	 * @return array<int, array{0: string, 1: string, 2: array}> Method, path, params.
	 */
	private static function every_route(): array {
		$calls = array();
		foreach ( rest_get_server()->get_routes( 'postbag/v1' ) as $route => $handlers ) {
			if ( '/postbag/v1' === $route || 0 === strpos( $route, '/postbag/v1/unsubscribe' ) ) {
				continue;
			}
			$path = preg_replace_callback( '/\(\?P<\w+>((?:[^()]|\([^()]*\))*)\)/', array( self::class, 'sample' ), $route );
			foreach ( $handlers as $handler ) {
				foreach ( array_keys( $handler['methods'] ) as $method ) {
					$calls[] = array( $method, substr( $path, strlen( '/postbag/v1' ) ), self::valid_params( (array) ( $handler['args'] ?? array() ) ) );
				}
			}
		}
		return $calls;
	}

	/**
	 * A value matching a route's group.
	 *
	 * @param array $group The regex match: [1] is the group's pattern.
	 */
	private static function sample( array $group ): string {
		foreach ( array( '1', str_repeat( 'a', 64 ), 'job-1', 'a', 'a@example.net' ) as $candidate ) {
			if ( preg_match( '#^(?:' . $group[1] . ')$#', $candidate ) ) {
				return $candidate;
			}
		}
		throw new RuntimeException( 'No sample value for ' . $group[1] );
	}

	/**
	 * @param array $args A handler's argument schema.
	 */
	private static function valid_params( array $args ): array {
		$params = array();
		foreach ( $args as $name => $schema ) {
			if ( empty( $schema['required'] ) ) {
				continue;
			}
			$type            = $schema['type'] ?? 'string';
			$params[ $name ] = $schema['enum'][0] ?? ( 'integer' === $type || 'number' === $type ? max( 1, (int) ( $schema['minimum'] ?? 1 ) ) : ( 'boolean' === $type ? true : ( 'date-time' === ( $schema['format'] ?? '' ) ? '2026-11-22T07:00:00Z' : 'a@example.net' ) ) );
		}
		return $params;
	}

	public function test_every_route_refuses_a_subscriber_and_a_logged_out_user(): void {
		$calls = self::every_route();
		$paths = array_column( $calls, 1 );
		foreach ( array( '/status', '/log', '/log/1', '/log/1/resend', '/jobs', '/jobs/1/cancel', '/test', '/spool/retry', '/sync' ) as $ours ) {
			$this->assertContains( $ours, $paths, 'the enumeration finds the console routes' );
		}
		foreach ( array( 0 => 401, self::subscriber() => 403 ) as $user => $expected ) {
			wp_set_current_user( $user );
			foreach ( $calls as list( $method, $path, $params ) ) {
				$response = $this->call( $method, $path, $params );
				$this->assertSame( $expected, $response->get_status(), "$method $path as user $user: " . wp_json_encode( $response->get_data() ) );
			}
		}
		$this->assertSame( array(), $this->s3->calls, 'nothing was done' );
	}

	public function test_every_route_uses_the_one_permission_check(): void {
		$checked = 0;
		foreach ( rest_get_server()->get_routes( 'postbag/v1' ) as $route => $handlers ) {
			if ( '/postbag/v1' === $route || 0 === strpos( $route, '/postbag/v1/unsubscribe' ) ) {
				continue;
			}
			foreach ( $handlers as $handler ) {
				$this->assertSame( array( Postbag_Rest::class, 'allowed' ), $handler['permission_callback'], "$route: one capability check for every route class" );
				++$checked;
			}
		}
		$this->assertGreaterThan( 12, $checked, 'console, schedule and suppression routes' );
	}

	public function test_status_has_the_configuration_the_account_and_the_counts(): void {
		$this->s3->put_objects( array( 'status/account.json' => '{"version":1,"checked_at":"2026-11-22T06:59:00Z","max_send_rate":14,"max_24_hour_send":50000,"sent_last_24_hours":12,"production_access":true,"sending_enabled":true}' ) );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Counted', 'Body' );
		$this->flush_and_log();

		$data = $this->call( 'GET', '/status' )->get_data();

		$this->assertTrue( $data['config']['bucket_reachable'] );
		$this->assertSame( 'postbag-test', $data['config']['bucket'] );
		$this->assertSame( 14, $data['account']['max_send_rate'] );
		$this->assertSame( 1, $data['counts']['24h']['uploaded'] );
		$this->assertSame( 1, $data['counts']['7d']['uploaded'] );
		$this->assertSame( array(), $data['jobs'] );
	}

	public function test_status_counts_delivered_bounced_and_complained_from_the_senders_feedback(): void {
		$day = static function ( string $date, int $delivered, int $bounced, int $complained ): array {
			return compact( 'date', 'delivered', 'bounced', 'complained' ) + array( 'sent' => $delivered + $bounced );
		};
		$this->s3->put_objects(
			array(
				'status/feedback.json' => (string) wp_json_encode(
					array(
						'version'           => 1,
						'generated_at'      => '2026-11-22T06:58:00Z',
						'days'              => array( $day( '2026-11-22', 5, 1, 0 ), $day( '2026-11-20', 10, 0, 1 ), $day( '2026-11-15', 100, 9, 9 ), 'not a day' ),
						'bounce_rate_7d'    => 0.0625,
						'complaint_rate_7d' => 0.0625,
						'sent_7d'           => 16,
					)
				),
			)
		);

		$data = $this->call( 'GET', '/status' )->get_data();

		$pick = static function ( array $counts ): array {
			return array(
				'delivered'  => $counts['delivered'],
				'bounced'    => $counts['bounced'],
				'complained' => $counts['complained'],
			);
		};
		$this->assertSame( array( 'delivered' => 5, 'bounced' => 1, 'complained' => 0 ), $pick( $data['counts']['24h'] ), 'today (UTC)' );
		$this->assertSame( array( 'delivered' => 15, 'bounced' => 1, 'complained' => 1 ), $pick( $data['counts']['7d'] ), 'the last 7 days, not the 15th' );
		$this->assertSame( array( 0.0625, 0.0625, '2026-11-22T06:58:00Z' ), array_values( $data['rates'] ) );
		$this->assertNotSame( '', $data['config']['credentials'] );
		$this->assertTrue( $data['config']['from_allowed'], 'POSTBAG_ALLOWED_SENDERS not set: any From' );
	}

	public function test_status_says_when_the_bucket_does_not_answer(): void {
		$this->s3->fail_pattern = '/^status\//';
		$this->s3->fail_status  = 0;
		$this->s3->fail_error   = 'Could not resolve host';

		$data = $this->call( 'GET', '/status' )->get_data();

		$this->assertFalse( $data['config']['bucket_reachable'] );
		$this->assertSame( 'Could not resolve host', $data['config']['bucket_error'] );
		$this->assertNull( $data['account'] );
	}

	public function test_the_log_is_paged_and_filtered_with_totals(): void {
		foreach ( array( 'One', 'Two', 'Three' ) as $subject ) {
			wp_mail( array( 'a@example.net', self::MARKER ), $subject, 'Body' );
		}
		$this->plugin->log_recorder()->write_pending();

		$page = $this->call(
			'GET',
			'/log',
			array(
				'per_page' => 2,
				'status'   => 'queued',
			)
		);

		$this->assertCount( 2, $page->get_data() );
		$this->assertSame( '3', $page->get_headers()['X-WP-Total'] );
		$this->assertSame( '2', $page->get_headers()['X-WP-TotalPages'] );
		$this->assertSame( 400, $this->call( 'GET', '/log', array( 'status' => 'lost' ) )->get_status(), 'an unknown status is named' );
		$this->assertSame( 404, $this->call( 'GET', '/log/999999' )->get_status() );
		$one = $this->call( 'GET', '/log', array( 'subject' => 'One' ) )->get_data()[0];
		$this->assertSame( 'One', $this->call( 'GET', '/log/' . $one['id'] )->get_data()['subject'] );
	}

	public function test_a_test_mail_is_queued_and_its_row_answered(): void {
		$response = $this->call( 'POST', '/test', array( 'to' => 'me@example.net' ) );

		$this->assertSame( 202, $response->get_status() );
		$row = $response->get_data();
		$this->assertSame( array( 'queued', 'me@example.net' ), array( $row['status'], $row['recipients'] ) );
		$this->flush_and_log();
		$batch = array_values( $this->s3->batches() )[0];
		$this->assertSame( $row['mail_id'], $batch['emails'][0]['id'], 'through the non-priority pipeline' );
		$this->assertSame( 'uploaded', $this->call( 'GET', '/log/' . $row['id'] )->get_data()['status'] );
		$this->assertSame( 400, $this->call( 'POST', '/test', array( 'to' => 'not an address' ) )->get_status() );
	}

	public function test_a_failed_mail_is_resent_through_a_redrive_request(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'Refused', 'Body' );
		$this->flush_and_log();
		$row = $this->plugin->log()->query( array() )['rows'][0];
		$this->plugin->log()->set_status( $row['mail_id'], 'failed', 'MessageRejected', array( 'receipt_key' => 'receipts/' . $row['batch_id'] . '.json' ) );

		$response = $this->call( 'POST', '/log/' . $row['id'] . '/resend' );

		$this->assertSame( 200, $response->get_status(), (string) wp_json_encode( $response->get_data() ) );
		$keys = preg_grep( '#^requests/redrive/[0-9a-f-]{36}\.json$#', array_keys( $this->s3->objects ) );
		$this->assertCount( 1, $keys );
		$this->assertSame(
			array(
				'version'      => 1,
				'kind'         => 'batch',
				'id'           => $row['batch_id'],
				'mail_ids'     => array( $row['mail_id'] ),
				'requested_at' => '2026-11-22T07:00:00Z',
			),
			json_decode( $this->s3->objects[ reset( $keys ) ]['body'], true )
		);
		$redrive = new Postbag_Schema_Checker( dirname( __DIR__, 3 ) . '/fixtures/redrive-request-v1.schema.json' );
		$this->assertSame( array(), $redrive->errors( $this->s3->objects[ reset( $keys ) ]['body'] ), 'what the sender reads' );
		$after  = $response->get_data();
		$result = 'status/redrive/' . basename( reset( $keys ) );
		$this->assertSame( array( 'uploaded', $result ), array( $after['status'], $after['receipt_key'] ), 'waits on the sender\'s result' );
		$this->assertSame( 409, $this->call( 'POST', '/log/' . $row['id'] . '/resend' )->get_status(), 'not failed any more' );

		$this->s3->put_objects( array( $result => self::redrive_result( $row['batch_id'], 'redriven', array( 'queue/' . $row['batch_id'] . '.redrive-1.json' ), array() ) ) );
		$this->plugin->log_sync()->run();

		$this->assertSame( 'receipts/' . $row['batch_id'] . '.redrive-1.json', $this->plugin->log()->get( $row['mail_id'] )['receipt_key'], 'the receipt the re-drive writes, as its result names it' );
	}

	/**
	 * `status/redrive/<uuid>.json` as chalicelib/redrive_request.py writes it.
	 *
	 * @param string   $batch_id   Batch.
	 * @param string   $state      redriven or nothing_failed.
	 * @param string[] $queued     Keys queued.
	 * @param string[] $not_failed Mail ids asked for that were not failed.
	 */
	private static function redrive_result( string $batch_id, string $state, array $queued, array $not_failed ): string {
		return (string) wp_json_encode( compact( 'state', 'queued', 'not_failed' ) + array( 'version' => 1, 'kind' => 'batch', 'id' => $batch_id, 'mail_ids' => array(), 'requested_at' => '2026-11-22T07:00:00Z', 'handled_at' => '2026-11-22T07:00:02Z' ) );
	}

	public function test_a_resend_the_sender_finds_nothing_to_do_for_is_failed_again_with_its_word(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'Refused', 'Body' );
		$this->flush_and_log();
		$row = $this->plugin->log()->query( array() )['rows'][0];
		$this->plugin->log()->set_status( $row['mail_id'], 'failed', 'MessageRejected', array( 'receipt_key' => 'receipts/' . $row['batch_id'] . '.json' ) );
		$this->call( 'POST', '/log/' . $row['id'] . '/resend' );
		$key = $this->plugin->log()->get( $row['mail_id'] )['receipt_key'];

		$this->s3->put_objects( array( $key => self::redrive_result( $row['batch_id'], 'nothing_failed', array(), array( $row['mail_id'] ) ) ) );
		$this->plugin->log_sync()->run();

		$after = $this->plugin->log()->get( $row['mail_id'] );
		$this->assertSame( 'failed', $after['status'], 'settled, not waiting for a receipt that never comes' );
		$this->assertStringContainsString( 'no failed copy', $after['reason'] );
	}

	public function test_a_resend_takes_the_other_failed_mails_of_its_batch_generation_along(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'One', 'Body' );
		wp_mail( array( 'b@example.net', self::MARKER ), 'Two', 'Body' );
		wp_mail( array( 'c@example.net', self::MARKER ), 'Three', 'Body' );
		$this->flush_and_log();
		$rows    = array_column( $this->plugin->log()->query( array() )['rows'], null, 'subject' );
		$receipt = 'receipts/' . $rows['One']['batch_id'] . '.json';
		foreach ( array( 'One', 'Two' ) as $subject ) {
			$this->plugin->log()->set_status( $rows[ $subject ]['mail_id'], 'failed', 'MessageRejected', array( 'receipt_key' => $receipt ) );
		}
		$this->plugin->log()->set_status( $rows['Three']['mail_id'], 'sent', '', array( 'receipt_key' => $receipt ) );

		$this->assertSame( 200, $this->call( 'POST', '/log/' . $rows['One']['id'] . '/resend' )->get_status() );

		$waits = $this->plugin->log()->get( $rows['One']['mail_id'] )['receipt_key'];
		$this->assertSame( array( 'uploaded', $waits ), array_values( array_intersect_key( $this->plugin->log()->get( $rows['Two']['mail_id'] ), array_flip( array( 'status', 'receipt_key' ) ) ) ), 're-driven with it: it waits on the same result' );
		$this->assertSame( 'sent', $this->plugin->log()->get( $rows['Three']['mail_id'] )['status'] );
	}

	public function test_a_resend_made_while_s3_is_down_waits_in_the_spool(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'Refused', 'Body' );
		$this->flush_and_log();
		$row = $this->plugin->log()->query( array() )['rows'][0];
		$this->plugin->log()->set_status( $row['mail_id'], 'failed', 'MessageRejected' );
		$this->s3->fail_pattern = '#^requests/#';

		$response = $this->call( 'POST', '/log/' . $row['id'] . '/resend' );

		$this->assertSame( 200, $response->get_status() );
		$this->assertSame( 'Resend requested: waiting in the spool for S3.', $response->get_data()['reason'] );
		$this->assertSame( array(), preg_grep( '#^requests/#', array_keys( $this->s3->objects ) ) );
		$this->s3->fail_pattern = null;
		$this->plugin->schedule_controls()->run( true ); // What the spool's retry event runs.
		$this->assertCount( 1, preg_grep( '#^requests/redrive/#', array_keys( $this->s3->objects ) ) );
	}

	public function test_jobs_are_listed_and_cancelled(): void {
		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ) ),
				'subject'    => 'Job',
				'html'       => '<p>Hi</p>',
				'from'       => 'news@example.org',
			)
		);

		$jobs = $this->call( 'GET', '/jobs' )->get_data();
		$this->assertSame( array( $job_id ), array_column( $jobs, 'job_id' ) );

		$this->assertSame( 200, $this->call( 'POST', "/jobs/$job_id/cancel" )->get_status() );
		$this->plugin->jobs()->stream_pending();
		$this->assertSame( 'cancelled', $this->plugin->log()->get( $job_id )['status'] );
	}

	public function test_spool_retry_uploads_what_waits(): void {
		$this->s3->fail_pattern = '/./';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Waiting', 'Body' );
		$this->flush_and_log();
		$this->s3->fail_pattern = null;

		$summary = $this->call( 'POST', '/spool/retry' )->get_data();

		$this->assertSame( 1, $summary['uploaded'] );
		$this->assertSame( 'uploaded', $this->plugin->log()->query( array() )['rows'][0]['status'] );
	}
}
