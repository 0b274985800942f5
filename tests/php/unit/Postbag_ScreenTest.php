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
 */
final class Postbag_ScreenTest extends Postbag_Unit_Test_Case {

	/** @var array */
	private $saved_get;

	protected function setUp(): void {
		parent::setUp();
		global $wpdb;
		$wpdb->query( 'TRUNCATE TABLE ' . Postbag_Mail_Log::table() ); // phpcs:ignore WordPress.DB
		$this->saved_get = $_GET;
		wp_set_current_user( 1 );
		// What wp-admin loads before a screen renders (WP_List_Table needs its helpers).
		require_once ABSPATH . 'wp-admin/includes/admin.php';
		set_current_screen( 'toplevel_page_postbag' );
		add_filter( 'wp_die_handler', array( $this, 'die_handler' ) );
	}

	protected function tearDown(): void {
		$_GET  = $this->saved_get;
		$_POST = array();
		$_REQUEST = array();
		remove_filter( 'wp_die_handler', array( $this, 'die_handler' ) );
		wp_set_current_user( 0 );
		parent::tearDown();
	}

	public function die_handler(): callable {
		return static function ( $message, $title = '', $args = array() ): void {
			throw new RuntimeException( 'wp_die: ' . ( is_string( $message ) ? $message : '' ), (int) ( $args['response'] ?? 500 ) );
		};
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
}
