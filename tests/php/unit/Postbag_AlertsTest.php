<?php
/**
 * Alerts: a notice and one mail an hour per kind to the site admin, and the weekly summary.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Alerts
 */
final class Postbag_AlertsTest extends Postbag_Unit_Test_Case {

	const ADMIN_EMAIL = 'owner@example.org';

	/** @var string The site's admin_email before the test. */
	private $saved_admin_email = '';

	protected function setUp(): void {
		parent::setUp();
		delete_option( Postbag_Alerts::OPTION );
		$this->saved_admin_email = (string) get_option( 'admin_email' );
		update_option( 'admin_email', self::ADMIN_EMAIL );
		wp_set_current_user( 1 );
		// Every mail non-priority: alerts must still go through core at once.
		add_filter( 'postbag_is_non_priority', '__return_true' );
		self::wp_die_throws();
	}

	protected function tearDown(): void {
		delete_metadata( 'user', 0, Postbag_Alerts::SEEN_META, '', true );
		delete_option( Postbag_Alerts::OPTION );
		update_option( 'admin_email', $this->saved_admin_email );
		wp_set_current_user( 0 );
		unset( $_REQUEST['_wpnonce'] );
		parent::tearDown();
	}

	/**
	 * Mails core sent to the site admin.
	 *
	 * @return array<int, array{subject: string, body: string}>
	 */
	private static function alert_mails(): array {
		return array_values(
			array_filter(
				Postbag_Test_Mailer::current()->sent,
				static function ( array $mail ): bool {
					return in_array( self::ADMIN_EMAIL, array_column( $mail['to'], 0 ), true );
				}
			)
		);
	}

	/**
	 * What Postbag_Mail_Log fires when a mail fails or is quarantined.
	 *
	 * @param string $status New status.
	 * @param string $reason Why.
	 */
	private static function mail_became( string $status, string $reason, string $subject = 'Your order' ): void {
		do_action(
			'postbag_mail_status_changed',
			array(
				'mail_id'   => 'm-' . bin2hex( random_bytes( 4 ) ),
				'subject'   => $subject,
				'recipient' => 'reader@example.net',
				'status'    => $status,
				'reason'    => $reason,
			),
			'uploaded'
		);
	}

	public function test_a_failure_mails_the_admin_once_through_core_then_summarises_an_hour_later(): void {
		self::mail_became( 'failed', 'MessageRejected: Email address is not verified.' );
		self::mail_became( 'failed', 'MessageRejected: second' );

		$mails = self::alert_mails();
		$this->assertCount( 1, $mails, 'one mail, not one per failure' );
		$this->assertStringContainsString( 'Postbag: 1 mail failed', $mails[0]['subject'] );
		$this->assertStringContainsString( 'MessageRejected: Email address is not verified.', $mails[0]['body'] );
		$this->assertSame( array(), $this->s3->batches(), 'the alert did not go through Postbag' );
		$this->assertSame( 0, $this->plugin->queue()->count(), 'nor into its queue' );

		$this->now += 30 * 60;
		$this->plugin->alerts()->check();
		$this->assertCount( 1, self::alert_mails(), 'still within the hour' );

		$this->now += 31 * 60;
		$this->plugin->alerts()->check();
		$mails = self::alert_mails();
		$this->assertCount( 2, $mails );
		$this->assertStringContainsString( 'Postbag: 1 mail failed', $mails[1]['subject'], 'the one held back' );
		$this->assertStringContainsString( 'MessageRejected: second', $mails[1]['body'] );

		$this->now += 2 * HOUR_IN_SECONDS;
		$this->plugin->alerts()->check();
		$this->assertCount( 2, self::alert_mails(), 'nothing new, no mail' );
	}

	public function test_each_kind_has_its_own_limit(): void {
		self::mail_became( 'failed', 'MessageRejected' );
		self::mail_became( 'quarantined', 'version: unsupported batch version 9' );
		self::mail_became( 'sent', '' );

		$subjects = array_column( self::alert_mails(), 'subject' );
		$this->assertCount( 2, $subjects );
		$this->assertStringContainsString( '1 mail failed', $subjects[0] );
		$this->assertStringContainsString( '1 mail was quarantined', $subjects[1] );
	}

	public function test_stuck_spooled_mail_is_alerted_by_the_hourly_check(): void {
		remove_filter( 'postbag_is_non_priority', '__return_true' );
		$this->s3->fail_pattern = '/./';
		$this->s3->fail_error   = 'Service Unavailable';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$this->plugin->flush();

		$this->plugin->alerts()->check();
		$this->assertSame( array(), self::alert_mails(), 'just spooled' );

		$this->now += 20 * 60;
		$this->plugin->alerts()->check();
		$mails = self::alert_mails();
		$this->assertCount( 1, $mails );
		$this->assertStringContainsString( '1 mail is stuck', $mails[0]['subject'] );
		$this->assertStringContainsString( '1 mail(s) waiting in the spool', $mails[0]['body'] );
		$this->assertStringContainsString( 'Service Unavailable', $mails[0]['body'] );
	}

	public function test_uploaded_mail_the_sender_never_receipted_is_alerted_by_the_hourly_check(): void {
		self::empty_mail_log();
		remove_filter( 'postbag_is_non_priority', '__return_true' );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$this->plugin->flush();
		$this->plugin->log_recorder()->write_pending();

		$this->now += 20 * 60;
		$this->plugin->alerts()->check();

		$mails = self::alert_mails();
		$this->assertCount( 1, $mails, 'no sender deployed: nothing ever comes back' );
		$this->assertStringContainsString( '1 mail(s) uploaded with no receipt from the sender', $mails[0]['body'] );
	}

	public function test_the_notice_lists_alerts_escaped_until_dismissed(): void {
		self::mail_became( 'failed', '<script>alert(1)</script>' );

		$html = $this->plugin->alerts()->notice();

		$this->assertStringContainsString( 'id="postbag-alerts-notice"', $html );
		$this->assertStringContainsString( 'failed: 1 mail(s)', $html );
		$this->assertStringContainsString( '&lt;script&gt;', $html );
		$this->assertStringNotContainsString( '<script>', $html );
		$this->assertMatchesRegularExpression( '/name="_wpnonce" value="[0-9a-f]{10}"/', $html );

		$this->now           += 1;
		$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Alerts::DISMISS_ACTION );
		$this->plugin->alerts()->handle_dismiss();
		$this->assertSame( '', $this->plugin->alerts()->notice() );

		$this->now += 60;
		self::mail_became( 'failed', 'a new one' );
		$this->assertStringContainsString( 'a new one', $this->plugin->alerts()->notice(), 'a later alert shows again' );
	}

	public function test_dismissing_needs_the_capability_and_the_nonce(): void {
		self::mail_became( 'failed', 'x' );
		$_REQUEST['_wpnonce'] = 'forged';
		try {
			$this->plugin->alerts()->handle_dismiss();
			$this->fail( 'A forged nonce was accepted.' );
		} catch ( RuntimeException $e ) {
			$this->assertStringContainsString( 'wp_die', $e->getMessage() );
		}
		$subscriber = wp_insert_user(
			array(
				'user_login' => 'alerts-subscriber-' . bin2hex( random_bytes( 3 ) ),
				'user_pass'  => wp_generate_password(),
				'role'       => 'subscriber',
			)
		);
		wp_set_current_user( $subscriber );
		$this->assertSame( '', $this->plugin->alerts()->notice(), 'not shown to a subscriber' );
		$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Alerts::DISMISS_ACTION );
		try {
			$this->plugin->alerts()->handle_dismiss();
			$this->fail( 'A subscriber dismissed the alerts.' );
		} catch ( RuntimeException $e ) {
			$this->assertStringContainsString( 'not allowed', $e->getMessage() );
		}
		require_once ABSPATH . 'wp-admin/includes/user.php';
		wp_delete_user( $subscriber );
	}

	public function test_the_weekly_summary_mails_the_weeks_counts(): void {
		$alerts = new Postbag_Alerts(
			$this->plugin->interceptor(),
			$this->plugin->site_health(),
			function ( int $since ): array {
				$this->assertSame( $this->now - WEEK_IN_SECONDS, $since );
				return array(
					'sent'   => 41,
					'failed' => 2,
				);
			},
			true,
			function (): int {
				return $this->now;
			}
		);

		$this->assertTrue( $alerts->weekly_summary() );

		$mails = self::alert_mails();
		$this->assertCount( 1, $mails );
		$this->assertStringContainsString( 'weekly mail summary', $mails[0]['subject'] );
		$this->assertMatchesRegularExpression( '/sent:\s+41/', $mails[0]['body'] );
		$this->assertMatchesRegularExpression( '/failed:\s+2/', $mails[0]['body'] );
	}

	public function test_the_weekly_summary_can_be_turned_off(): void {
		$this->use_settings( array( 'weekly_summary' => false ) );

		$this->assertFalse( $this->plugin->alerts()->weekly_summary() );
		$this->assertSame( array(), self::alert_mails() );
	}

	public function test_an_admin_page_schedules_the_checks_a_site_updated_without_reactivation_lacks(): void {
		Postbag_Alerts::unschedule();

		$this->assertNotFalse( has_action( 'admin_init', array( Postbag_Alerts::class, 'schedule' ) ) );
		Postbag_Alerts::schedule(); // What admin_init runs (all of it would also check WordPress.org for updates).

		$this->assertNotFalse( wp_next_scheduled( Postbag_Alerts::CHECK_HOOK ) );
		$this->assertNotFalse( wp_next_scheduled( Postbag_Alerts::WEEKLY_HOOK ) );
		$this->assertSame( 'weekly', wp_get_schedule( Postbag_Alerts::WEEKLY_HOOK ) );
	}

	public function test_the_weekly_summary_is_on_by_default_and_reads_the_email_log(): void {
		$this->assertTrue( $this->plugin->alerts()->weekly_summary() );
		$this->assertMatchesRegularExpression( '/queued:\s+\d+/', self::alert_mails()[0]['body'] );
	}
}
