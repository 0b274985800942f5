<?php
/**
 * The Postbag screen: every tab renders for an administrator, escaped; others are refused.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * wp_die() throws here (a filter), so a refusal is an exception the test sees.
 *
 * @covers Postbag_Screen
 * @covers Postbag_Log_Table
 * @covers Postbag_Scheduled_Tab
 */
final class Postbag_ScreenTest extends Postbag_Unit_Test_Case {

	/** @var array */
	private $saved_get;

	protected function setUp(): void {
		parent::setUp();
		self::empty_mail_log();
		$this->saved_get = $_GET;
		wp_set_current_user( 1 );
		// What wp-admin loads before a screen renders (WP_List_Table needs its helpers).
		require_once ABSPATH . 'wp-admin/includes/admin.php';
		set_current_screen( 'toplevel_page_postbag' );
		self::wp_die_throws();
	}

	protected function tearDown(): void {
		$_GET  = $this->saved_get;
		$_POST = array();
		$_REQUEST = array();
		wp_set_current_user( 0 );
		parent::tearDown();
	}

	/**
	 * @param string $tab   Tab.
	 * @param array  $query More of $_GET.
	 */
	private function render( string $tab, array $query = array() ): string {
		$_GET = array_merge(
			array(
				'page' => 'postbag',
				'tab'  => $tab,
			),
			$query
		);
		$screen = new Postbag_Screen( $this->plugin->console() );
		ob_start();
		try {
			$screen->render();
		} finally {
			$html = (string) ob_get_clean();
		}
		return $html;
	}

	/**
	 * @return array<string, array{0: string, 1: string[]}>
	 */
	public function tabs(): array {
		return array(
			'overview'     => array( 'overview', array( 'id="postbag-config"', 'id="postbag-config-credentials"', 'id="postbag-config-from"', 'id="postbag-counts"', 'id="postbag-count-sent"', 'id="postbag-count-delivered"', 'id="postbag-rates"', 'id="postbag-running-jobs"', 'id="postbag-account-missing"', 'aria-current="page"' ) ),
			'log'          => array( 'log', array( 'id="postbag-log-search"', 'class="postbag-log-row"', 'id="postbag-filter-status"', 'id="postbag-log-search-input"' ) ),
			'jobs'         => array( 'jobs', array( 'id="postbag-jobs-table"' ) ),
			'scheduled'    => array( 'scheduled', array( 'id="postbag-scheduled-table"', 'id="postbag-tab-scheduled"' ) ),
			'suppressions' => array( 'suppressions', array( 'id="postbag-suppression-add"', 'id="postbag-suppression-list"', 'aria-live="polite"' ) ),
			'actions'      => array( 'actions', array( 'id="postbag-send-test"', 'id="postbag-test-status"', 'id="postbag-retry-spool"', 'id="postbag-sync"', 'name="_wpnonce"' ) ),
		);
	}

	/**
	 * @dataProvider tabs
	 *
	 * @param string   $tab   Tab.
	 * @param string[] $hooks What the browser tests rely on.
	 */
	public function test_each_tab_renders_for_an_administrator_with_escaped_values( string $tab, array $hooks ): void {
		wp_mail( array( '"<b>Eve</b>" <eve@example.net>', self::MARKER ), '<script>alert(1)</script>', 'Body' );
		$this->flush_and_log();

		$html = $this->render( $tab );

		foreach ( $hooks as $hook ) {
			$this->assertStringContainsString( $hook, $html );
		}
		$this->assertStringNotContainsString( '<script>alert(1)', $html );
		$this->assertStringNotContainsString( '<b>Eve', $html );
	}

	public function test_the_detail_view_names_the_batch_receipt_and_reason_and_offers_a_resend(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'Refused', 'Body' );
		$this->flush_and_log();
		$row = $this->plugin->log()->query( array() )['rows'][0];
		$this->plugin->log()->set_status( $row['mail_id'], 'failed', 'MessageRejected: <not verified>', array( 'receipt_key' => 'receipts/' . $row['batch_id'] . '.json' ) );

		$html = $this->render( 'log', array( 'entry' => (string) $row['id'] ) );

		$this->assertStringContainsString( 'id="postbag-detail-batch">' . $row['batch_id'], $html );
		$this->assertStringContainsString( 'id="postbag-detail-receipt">receipts/' . $row['batch_id'] . '.json', $html );
		$this->assertStringContainsString( 'MessageRejected: &lt;not verified&gt;', $html );
		$this->assertStringContainsString( 'id="postbag-resend"', $html );
	}

	public function test_a_running_job_shows_its_progress_and_a_cancel_button(): void {
		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ), array( 'email' => 'b@example.net' ) ),
				'subject'    => 'Weekly <digest>',
				'html'       => '<p>Hi</p>',
				'from'       => 'news@example.org',
			)
		);
		$this->plugin->jobs()->stream_pending();
		$this->plugin->log()->set_status(
			$job_id,
			'uploaded',
			'',
			array(
				'counts' => array(
					'recipients'    => 2,
					'sent'          => 1,
					'estimated_end' => '2026-11-22T07:05:00Z',
				),
			)
		);

		$jobs     = $this->render( 'jobs' );
		$overview = $this->render( 'overview' );

		$this->assertStringContainsString( 'data-job-id="' . $job_id . '"', $jobs );
		$this->assertStringContainsString( 'postbag-cancel-job', $jobs );
		$this->assertStringContainsString( 'aria-label="Cancel the job Weekly &lt;digest&gt;"', $jobs );
		$this->assertStringContainsString( 'max="100" value="50"', $overview );
		$this->assertStringContainsString( 'ETA 2026-11-22T07:05:00Z (UTC)', $overview );
	}

	public function test_a_subscriber_is_refused(): void {
		$user = wp_insert_user(
			array(
				'user_login' => 'postbag-screen-' . bin2hex( random_bytes( 3 ) ),
				'user_pass'  => wp_generate_password(),
				'role'       => 'subscriber',
			)
		);
		wp_set_current_user( $user );

		$this->expectExceptionCode( 403 );
		$this->render( 'overview' );
	}

	public function test_an_action_needs_its_nonce(): void {
		$_POST = array( 'postbag_do' => 'retry' );
		$_REQUEST = $_POST;

		$this->expectExceptionMessage( 'wp_die' );
		( new Postbag_Screen( $this->plugin->console() ) )->handle_action();
	}

	public function test_the_test_mail_action_queues_it_and_shows_its_status(): void {
		$_POST    = array(
			'postbag_do' => 'test',
			'to'         => 'me@example.net',
			'_wpnonce'   => wp_create_nonce( 'postbag_console_test' ),
		);
		$_REQUEST = $_POST;

		$url = ( new Postbag_Screen( $this->plugin->console() ) )->handle_action();

		parse_str( (string) wp_parse_url( $url, PHP_URL_QUERY ), $query );
		$html = $this->render( 'actions', array( 'test' => $query['test'] ) );
		$this->assertStringContainsString( 'data-status="queued"', $html );
		$this->assertStringContainsString( 'id="postbag-notice"', $html );
	}

	/**
	 * Posts an action of the screen as admin-post.php would pass it on.
	 *
	 * @param string $do     postbag_do.
	 * @param array  $fields The form's other fields.
	 * @return string The notice the next view shows.
	 */
	private function post_action( string $do, array $fields ): string {
		$_POST    = array(
			'postbag_do' => $do,
			'_wpnonce'   => wp_create_nonce( 'postbag_console_' . $do ),
		) + $fields;
		$_REQUEST = $_POST;
		$url      = ( new Postbag_Screen( $this->plugin->console() ) )->handle_action();
		$this->assertStringContainsString( 'tab=scheduled', $url );
		$html = $this->render( 'scheduled' );
		$this->assertSame( 1, preg_match( '#<div id="postbag-notice" role="status" class="notice notice-(\w+)"><p>(.*?)</p>#', $html, $m ), 'a notice says what happened' );
		return $m[1] . ': ' . html_entity_decode( $m[2], ENT_QUOTES );
	}

	/** A notify job held until tomorrow 08:00 in Paris (07:00 UTC), uploaded. */
	private function scheduled_job(): string {
		add_filter(
			'pre_option_timezone_string',
			static function (): string {
				return 'Europe/Paris';
			}
		);
		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => 'a@example.net' ), array( 'email' => 'b@example.net' ) ),
				'subject'    => 'Monday <digest>',
				'html'       => '<p>Hi</p>',
				'from'       => 'news@example.org',
				'send_at'    => '2026-11-23 08:00',
			)
		);
		$this->plugin->jobs()->stream_pending();
		$this->plugin->log_recorder()->write_pending();
		return $job_id;
	}

	public function test_the_scheduled_tab_lists_a_held_job_and_batch_in_the_site_zone_with_utc_and_their_forms(): void {
		$job_id = $this->scheduled_job();
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Reminder <b>', 'Body', array( 'X-Postbag-Send-At: 2026-11-24 09:15' ) ) );
		$this->flush_and_log();

		$html = $this->render( 'scheduled' );

		$this->assertStringContainsString( 'data-kind="job" data-id="' . $job_id . '" data-state="scheduled"', $html );
		$this->assertStringContainsString( '<time datetime="2026-11-23T07:00:00Z" title="2026-11-23 07:00:00 UTC">2026-11-23 08:00 CET</time>', $html );
		$this->assertStringContainsString( 'Monday &lt;digest&gt;', $html );
		$this->assertStringContainsString( 'Notification job', $html );
		$this->assertStringContainsString( 'Mail batch', $html );
		$this->assertStringContainsString( '1 mail, zoe@example.net', $html );
		$this->assertStringContainsString( 'Reminder &lt;b&gt;', $html );
		$this->assertStringContainsString( '2026-11-24 09:15 CET</time>', $html );
		$this->assertStringContainsString( '<label for="postbag-send-at-job-' . $job_id . '">New send time</label> <input type="datetime-local" name="send_at" id="postbag-send-at-job-' . $job_id . '" value="2026-11-23T08:00">', $html );
		$this->assertStringContainsString( 'id="postbag-window-start-job-' . $job_id . '"', $html );
		$this->assertStringContainsString( 'id="postbag-scheduled-cancel-job-' . $job_id . '" aria-label="Cancel Monday &lt;digest&gt;"', $html );
		$this->assertSame( 2, substr_count( $html, 'name="postbag_do" value="reschedule"' ) );
		$this->assertSame( 1, substr_count( $html, 'id="postbag-window-start-' ), 'a mail batch has a send time only' );
		$this->assertStringNotContainsString( '<b>', $html );
		$this->assertLessThan( strpos( $html, 'Reminder' ), strpos( $html, 'Monday' ), 'soonest first' );
	}

	public function test_reschedule_from_the_screen_puts_the_schedule_in_utc_and_the_row_says_moved(): void {
		$job_id = $this->scheduled_job();
		++$this->now;

		$notice = $this->post_action(
			'reschedule',
			array(
				'kind'    => 'job',
				'id'      => $job_id,
				'send_at' => '2026-11-24T09:30',
			)
		);

		$this->assertStringStartsWith( 'success: Reschedule requested', $notice );
		$schedule = json_decode( $this->s3->objects[ "jobs/$job_id/schedule.json" ]['body'], true );
		$this->assertSame( array( '2026-11-24T08:30:00Z', null ), array( $schedule['send_at'], $schedule['send_between'] ), 'read in Paris, stored in UTC' );
		$this->assertStringContainsString( 'data-id="' . $job_id . '" data-state="moved"', $this->render( 'scheduled' ) );

		$notice = $this->post_action(
			'reschedule',
			array(
				'kind'         => 'job',
				'id'           => $job_id,
				'send_at'      => '',
				'window_start' => '2026-11-25T08:00',
				'window_end'   => '2026-11-25T12:00',
			)
		);

		$this->assertStringStartsWith( 'success:', $notice );
		$schedule = json_decode( $this->s3->objects[ "jobs/$job_id/schedule.json" ]['body'], true );
		$this->assertSame( array( null, array( 'start' => '2026-11-25T07:00:00Z', 'end' => '2026-11-25T11:00:00Z' ) ), array( $schedule['send_at'], $schedule['send_between'] ) );
	}

	public function test_cancel_from_the_screen_asks_the_sender_and_the_log_settles_it(): void {
		$job_id = $this->scheduled_job();
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Later', 'Body', array( 'X-Postbag-Send-At: 2026-11-24 09:15' ) ) );
		$this->flush_and_log();
		$batch_id = $this->plugin->log()->query( array( 'subject' => 'Later' ) )['rows'][0]['batch_id'];

		$this->assertStringStartsWith( 'success: Cancel requested', $this->post_action( 'sched_cancel', array( 'kind' => 'job', 'id' => $job_id ) ) );
		$this->assertStringStartsWith( 'success:', $this->post_action( 'sched_cancel', array( 'kind' => 'batch', 'id' => $batch_id ) ) );

		$this->assertArrayHasKey( "jobs/$job_id/cancel", $this->s3->objects );
		$this->assertArrayHasKey( "control/batches/$batch_id/cancel", $this->s3->objects );
		$html = $this->render( 'scheduled' );
		$this->assertStringContainsString( 'data-id="' . $job_id . '" data-state="cancel_requested"', $html );
		$this->assertStringNotContainsString( 'postbag-scheduled-cancel-job-', $html, 'nothing more to do while the sender answers' );

		$this->plugin->log()->set_status( $job_id, 'cancelled', 'Cancelled by the sender.' );
		$html = $this->render( 'scheduled' );
		$this->assertStringContainsString( 'data-id="' . $job_id . '" data-state="cancelled"', $html, 'the sender\'s word, through the log' );
		$this->assertStringContainsString( 'Cancelled by the sender.', $html );
	}

	/**
	 * @return array<string, array{0: array, 1: string}>
	 */
	public function bad_screen_reschedules(): array {
		return array(
			'beyond 90 days'     => array( array( 'send_at' => '2027-06-01T08:00' ), 'field: send_at' ),
			'no time'            => array( array( 'send_at' => '' ), 'Choose a new send time, or a window. (field: send_at)' ),
			'not a time'         => array( array( 'send_at' => 'soonish' ), 'field: send_at' ),
			'window without end' => array( array( 'window_start' => '2026-11-25T08:00' ), 'field: send_between' ),
			'window backwards'   => array(
				array(
					'window_start' => '2026-11-25T12:00',
					'window_end'   => '2026-11-25T08:00',
				),
				'field: send_between',
			),
		);
	}

	/**
	 * @dataProvider bad_screen_reschedules
	 *
	 * @param array  $fields The form's time fields.
	 * @param string $says   What the error notice names.
	 */
	public function test_a_bad_time_is_an_error_notice_naming_the_field_and_puts_nothing( array $fields, string $says ): void {
		$job_id = $this->scheduled_job();

		$notice = $this->post_action(
			'reschedule',
			array(
				'kind' => 'job',
				'id'   => $job_id,
			) + $fields
		);

		$this->assertStringStartsWith( 'error: ', $notice );
		$this->assertStringContainsString( $says, $notice );
		$this->assertArrayNotHasKey( "jobs/$job_id/schedule.json", $this->s3->objects );
	}

	public function test_a_cancelled_batch_cannot_be_moved_and_the_notice_says_why(): void {
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Later', 'Body', array( 'X-Postbag-Send-At: 2026-11-24 09:15' ) ) );
		$this->flush_and_log();
		$batch_id = $this->plugin->log()->query( array( 'subject' => 'Later' ) )['rows'][0]['batch_id'];
		$this->assertTrue( postbag_cancel_mail_batch( $batch_id ) );

		$notice = $this->post_action(
			'reschedule',
			array(
				'kind'    => 'batch',
				'id'      => $batch_id,
				'send_at' => '2026-11-25T08:00',
			)
		);

		$this->assertStringContainsString( 'was cancelled', $notice );
		$this->assertStringContainsString( '(field: batch_id)', $notice );
	}

	/**
	 * Each action, refused to a subscriber (403) and without its own nonce.
	 *
	 * @return array<string, array{0: string, 1: bool, 2: string, 3: int}>
	 */
	public function refused_scheduled_actions(): array {
		$cases = array();
		foreach ( array( 'reschedule', 'sched_cancel' ) as $do ) {
			$cases[ "$do by a subscriber" ]    = array( $do, true, $do, 403 );
			$cases[ "$do with another nonce" ] = array( $do, false, 'test', 403 );
		}
		return $cases;
	}

	/**
	 * @dataProvider refused_scheduled_actions
	 *
	 * @param string $do         The action.
	 * @param bool   $subscriber Whether a subscriber posts it (else the administrator).
	 * @param string $nonce_for  The action its nonce was made for.
	 * @param int    $status     The refusal's HTTP status.
	 */
	public function test_cancel_and_reschedule_are_refused_without_the_capability_or_their_nonce( string $do, bool $subscriber, string $nonce_for, int $status ): void {
		$job_id = $this->scheduled_job();
		if ( $subscriber ) {
			wp_set_current_user( self::subscriber() );
		}
		$_POST    = array(
			'postbag_do' => $do,
			'_wpnonce'   => wp_create_nonce( 'postbag_console_' . $nonce_for ),
			'kind'       => 'job',
			'id'         => $job_id,
			'send_at'    => '2026-11-24T09:30',
		);
		$_REQUEST = $_POST;

		try {
			( new Postbag_Screen( $this->plugin->console() ) )->handle_action();
			$this->fail( 'refused' );
		} catch ( RuntimeException $e ) {
			$this->assertSame( array( true, $status ), array( 0 === strpos( $e->getMessage(), 'wp_die' ), $e->getCode() ) );
		}
		$this->assertArrayNotHasKey( "jobs/$job_id/schedule.json", $this->s3->objects );
		$this->assertArrayNotHasKey( "jobs/$job_id/cancel", $this->s3->objects );
	}
}
