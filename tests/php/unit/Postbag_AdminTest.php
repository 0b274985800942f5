<?php
/**
 * Admin notices, admin actions, wp_mail() override detection, Site Health.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';
require_once __DIR__ . '/fixtures/other-mail-plugin.php';

/**
 * @covers Postbag_Admin
 * @covers Postbag_Override_Detector
 */
final class Postbag_AdminTest extends Postbag_Unit_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		wp_set_current_user( 1 ); // The administrator the install created.
		self::wp_die_throws();
	}

	protected function tearDown(): void {
		wp_set_current_user( 0 );
		unset( $_REQUEST['_wpnonce'], $_POST['file'], $_GET['postbag_uploaded'], $_GET['postbag_failed'] );
		parent::tearDown();
	}

	/**
	 * Spools a batch and lets `$attempts` uploads of it fail.
	 *
	 * @param int $attempts Failed attempts in all.
	 */
	private function failing_batch( int $attempts ): void {
		$this->s3->fail_pattern = '/./';
		$this->s3->fail_error   = 'Access Denied <script>alert(1)</script>';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$this->plugin->flush();
		for ( $n = 1; $n < $attempts; $n++ ) {
			$this->plugin->retry_spool( true );
		}
	}

	public function test_no_notice_while_all_is_well(): void {
		$this->assertSame( '', $this->plugin->admin()->notices() );
	}

	public function test_notice_after_repeated_failures_shows_the_escaped_reason_and_a_retry_button(): void {
		$this->failing_batch( 2 );
		$this->assertSame( '', $this->plugin->admin()->notices(), 'Two failures: not yet worth a notice.' );

		$this->plugin->retry_spool( true );
		$html = $this->plugin->admin()->notices();

		$this->assertStringContainsString( 'could not upload 1 batch(es) holding 1 mail(s) to S3 after 3 attempts', $html );
		$this->assertStringContainsString( 'HTTP 503 Access Denied &lt;script&gt;alert(1)&lt;/script&gt;', $html );
		$this->assertStringNotContainsString( '<script>', $html );
		$this->assertStringContainsString( 'name="action" value="postbag_retry_spool"', $html );
		$this->assertMatchesRegularExpression( '/name="_wpnonce" value="[0-9a-f]{10}"/', $html );
	}

	public function test_threshold_is_filterable(): void {
		add_filter(
			'postbag_notice_after_failures',
			static function (): int {
				return 1;
			}
		);
		$this->failing_batch( 1 );

		$this->assertStringContainsString( 'after 1 attempts', $this->plugin->admin()->notices() );
	}

	public function test_notices_need_manage_options(): void {
		$this->failing_batch( 3 );
		wp_set_current_user( self::subscriber() );

		$this->assertSame( '', $this->plugin->admin()->notices() );
	}

	public function test_render_notices_on_the_admin_hook(): void {
		$this->failing_batch( 3 );

		ob_start();
		do_action( 'admin_notices' );
		$this->assertStringContainsString( 'Retry now', (string) ob_get_clean() );
	}

	public function test_retry_now_checks_the_nonce_then_uploads(): void {
		$this->failing_batch( 3 );
		$this->s3->fail_pattern = null;
		$_REQUEST['_wpnonce']   = wp_create_nonce( Postbag_Admin::RETRY_ACTION );

		$url = $this->plugin->admin()->handle_retry();

		$this->assertStringContainsString( 'postbag_uploaded=1', $url );
		$this->assertStringContainsString( 'postbag_failed=0', $url );
		$this->assertCount( 1, $this->s3->batches() );
		$_GET['postbag_uploaded'] = '1';
		$_GET['postbag_failed']   = '0';
		$this->assertStringContainsString( '1 batch(es) uploaded, 0 still failing', $this->plugin->admin()->notices() );
	}

	public function test_retry_now_without_a_valid_nonce_is_refused(): void {
		$this->failing_batch( 3 );
		$this->s3->fail_pattern = null;
		$_REQUEST['_wpnonce']   = 'forged';

		try {
			$this->plugin->admin()->handle_retry();
			$this->fail( 'A forged nonce was accepted.' );
		} catch ( RuntimeException $e ) {
			$this->assertStringStartsWith( 'wp_die:', $e->getMessage() );
		}
		$this->assertSame( array(), $this->s3->batches() );
	}

	public function test_retry_now_without_the_capability_is_refused(): void {
		$this->failing_batch( 3 );
		$this->s3->fail_pattern = null;
		wp_set_current_user( self::subscriber() );
		$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Admin::RETRY_ACTION );

		try {
			$this->plugin->admin()->handle_retry();
			$this->fail( 'A subscriber could retry the spool.' );
		} catch ( RuntimeException $e ) {
			$this->assertStringContainsString( 'not allowed', $e->getMessage() );
		}
		$this->assertSame( array(), $this->s3->batches() );
	}

	public function test_missing_bucket_notice(): void {
		$this->use_settings( array( 'bucket' => '' ) );

		$this->assertStringContainsString( 'POSTBAG_BUCKET is not defined in wp-config.php', $this->plugin->admin()->notices() );
	}

	public function test_core_wp_mail_is_not_an_override(): void {
		$this->assertNull( ( new Postbag_Override_Detector() )->overriding_file() );
		$this->assertSame( 'good', ( new Postbag_Override_Detector() )->site_health_result()['status'] );
	}

	public function test_a_replacement_without_pre_wp_mail_is_named(): void {
		$detector = new Postbag_Override_Detector( 'postbag_test_mail_without_filter' );
		$file     = __DIR__ . '/fixtures/other-mail-plugin.php';

		$this->assertSame( $file, $detector->overriding_file() );
		$result = $detector->site_health_result();
		$this->assertSame( 'critical', $result['status'] );
		$this->assertSame( 'postbag_wp_mail', $result['test'] );
		$this->assertStringContainsString( esc_html( $file ), $result['description'] );
	}

	public function test_a_replacement_that_applies_pre_wp_mail_is_fine(): void {
		$this->assertNull( ( new Postbag_Override_Detector( 'postbag_test_mail_with_filter' ) )->overriding_file() );
	}

	public function test_a_replacement_calling_a_function_that_applies_pre_wp_mail_is_fine(): void {
		$this->assertNull( ( new Postbag_Override_Detector( 'postbag_test_fluent_wp_mail' ) )->overriding_file(), 'FluentSMTP\'s shape: wp_mail() returns fluentMailSend(...)' );
	}

	public function test_a_replacement_whose_helpers_never_apply_pre_wp_mail_is_named(): void {
		$detector = new Postbag_Override_Detector( 'postbag_test_mail_through_helpers' );

		$this->assertSame( __DIR__ . '/fixtures/other-mail-plugin.php', $detector->overriding_file() );
		$this->assertSame( 'critical', $detector->site_health_result()['status'] );
	}

	public function test_site_health_lists_the_test(): void {
		$tests = apply_filters( 'site_status_tests', array( 'direct' => array() ) );

		$this->assertArrayHasKey( 'postbag_wp_mail', $tests['direct'] );
		$this->assertSame( 'good', call_user_func( $tests['direct']['postbag_wp_mail']['test'] )['status'] );
	}

	/**
	 * Replaces the plugin's detector with one that looks at the fixture.
	 */
	private function admin_seeing_override(): Postbag_Admin {
		return new Postbag_Admin( $this->plugin->config(), $this->plugin->spool(), new Postbag_Spool_Retry( $this->plugin->spool(), new Postbag_Batch_Uploader( 'time' ), new Postbag_Sync_Sender( $this->plugin->interceptor() ), 'time' ), new Postbag_Override_Detector( 'postbag_test_mail_without_filter' ) );
	}

	public function test_override_notice_names_the_file_and_can_be_dismissed(): void {
		$admin = $this->admin_seeing_override();
		$file  = __DIR__ . '/fixtures/other-mail-plugin.php';
		delete_user_meta( 1, Postbag_Admin::DISMISS_META );

		$html = $admin->notices();
		$this->assertStringContainsString( esc_html( $file ), $html );
		$this->assertStringContainsString( 'value="postbag_dismiss_override"', $html );

		$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Admin::DISMISS_ACTION );
		$_POST['file']        = wp_slash( $file );
		$admin->handle_dismiss();

		$this->assertSame( '', $admin->notices() );
		delete_user_meta( 1, Postbag_Admin::DISMISS_META );
	}

	public function test_site_health_info_shows_settings_but_never_secrets(): void {
		$this->failing_batch( 1 );

		$fields = apply_filters( 'debug_information', array() )['postbag']['fields'];

		$this->assertStringStartsWith( 'postbag-test ', $fields['POSTBAG_BUCKET']['value'] );
		$this->assertStringStartsWith( 'queue/ ', $fields['postbag_prefix']['value'] );
		foreach ( array( 'POSTBAG_AWS_ACCESS_KEY_ID', 'POSTBAG_AWS_SECRET_ACCESS_KEY', 'POSTBAG_AWS_SESSION_TOKEN', 'POSTBAG_UNSUBSCRIBE_SECRET' ) as $secret ) {
			$this->assertContains( $fields[ $secret ]['value'], array( 'Defined in wp-config.php', 'Not defined' ) );
			$this->assertTrue( $fields[ $secret ]['private'] );
		}
		$this->assertStringContainsString( '1 batch(es), 1 mail(s) waiting', $fields['postbag_spool']['value'] );
	}

	/**
	 * Makes `$id` the current admin screen (as admin.php does).
	 *
	 * @param string $id Screen id.
	 */
	private static function on_screen( string $id ): void {
		require_once ABSPATH . 'wp-admin/includes/class-wp-screen.php';
		require_once ABSPATH . 'wp-admin/includes/screen.php';
		$GLOBALS['current_screen'] = WP_Screen::get( $id );
	}

	private function forget_screen(): void {
		unset( $GLOBALS['current_screen'] );
		delete_metadata( 'user', 0, Postbag_Admin::DISMISS_BUCKET_META, '', true );
		delete_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION );
	}

	public function test_the_missing_bucket_notice_is_dismissable_except_where_it_is_fixed(): void {
		$this->use_settings( array( 'bucket' => '' ) );
		try {
			self::on_screen( 'dashboard' );
			$html = $this->plugin->admin()->notices();
			$this->assertStringContainsString( 'POSTBAG_BUCKET is not defined', $html );
			$this->assertStringContainsString( 'value="postbag_dismiss_bucket"', $html );

			$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Admin::DISMISS_BUCKET_ACTION );
			$this->plugin->admin()->handle_dismiss_bucket();

			$this->assertStringNotContainsString( 'POSTBAG_BUCKET', $this->plugin->admin()->notices(), 'dismissed for this user' );
			foreach ( array( 'plugins', 'toplevel_page_postbag' ) as $screen ) {
				self::on_screen( $screen );
				$html = $this->plugin->admin()->notices();
				$this->assertStringContainsString( 'POSTBAG_BUCKET is not defined', $html, "always on $screen" );
				$this->assertStringNotContainsString( 'postbag_dismiss_bucket', $html, "no dismiss button on $screen" );
			}
		} finally {
			$this->forget_screen();
		}
	}

	public function test_dismissing_the_bucket_notice_needs_the_nonce(): void {
		$_REQUEST['_wpnonce'] = 'forged';
		try {
			$this->plugin->admin()->handle_dismiss_bucket();
			$this->fail( 'A forged nonce was accepted.' );
		} catch ( RuntimeException $e ) {
			$this->assertSame( '', get_user_meta( 1, Postbag_Admin::DISMISS_BUCKET_META, true ) );
		}
	}

	public function test_the_plugins_screen_warns_about_spooled_mail_and_records_the_choice(): void {
		$this->failing_batch( 1 );
		try {
			self::on_screen( 'dashboard' );
			$this->assertStringNotContainsString( 'not yet uploaded', $this->plugin->admin()->notices(), 'only on the Plugins screen' );

			self::on_screen( 'plugins' );
			$html = $this->plugin->admin()->notices();
			$this->assertStringContainsString( 'Postbag holds 1 mail(s) and 0 notify job(s) not yet uploaded', $html );
			$this->assertStringContainsString( 'Deleting Postbag keeps them on disk', $html );
			$this->assertStringContainsString( 'name="discard" value="1"', $html );

			$_POST['discard']     = '1';
			$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Admin::SPOOL_ON_UNINSTALL_ACTION );
			$this->plugin->admin()->handle_spool_on_uninstall();
			$this->assertSame( '1', get_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION ) );
			$this->assertStringContainsString( 'You chose to discard them', $this->plugin->admin()->notices() );

			$_POST['discard'] = '0';
			$this->plugin->admin()->handle_spool_on_uninstall();
			$this->assertFalse( get_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION ), 'and back' );
		} finally {
			unset( $_POST['discard'] );
			$this->forget_screen();
		}
	}

	public function test_a_subscriber_cannot_choose_to_discard_spooled_mail(): void {
		wp_set_current_user( self::subscriber() );
		$_POST['discard']     = '1';
		$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Admin::SPOOL_ON_UNINSTALL_ACTION );
		try {
			$this->plugin->admin()->handle_spool_on_uninstall();
			$this->fail( 'A subscriber chose.' );
		} catch ( RuntimeException $e ) {
			$this->assertStringContainsString( 'not allowed', $e->getMessage() );
		} finally {
			unset( $_POST['discard'] );
		}
		$this->assertFalse( get_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION ) );
	}

	public function test_site_health_info_says_where_the_from_and_proxy_come_from_and_names_unknown_constants(): void {
		$this->use_settings( array( 'from' => 'news@example.org' ) );
		if ( ! defined( 'POSTBAG_BUKCET' ) ) {
			define( 'POSTBAG_BUKCET', 'secret-looking value' );
		}

		$fields = $this->plugin->admin()->debug_information( array() )['postbag']['fields'];

		$this->assertSame( 'news@example.org (POSTBAG_FROM)', $fields['postbag_default_from']['value'] );
		$this->assertSame( 'None (WP_PROXY_HOST not defined)', $fields['postbag_proxy']['value'] );
		$this->assertStringContainsString( 'POSTBAG_BUKCET', $fields['postbag_unknown']['value'] );
		$this->assertStringNotContainsString( 'secret-looking', wp_json_encode( $fields ) );
		$this->assertStringEndsWith( '(default)', $fields['POSTBAG_STUCK_AFTER_MINUTES']['value'] );
		$this->assertSame( 'true (default)', $fields['POSTBAG_WEEKLY_SUMMARY']['value'] );

		$this->use_settings( array() );
		$fields = $this->plugin->admin()->debug_information( array() )['postbag']['fields'];
		$this->assertSame( 'wordpress@blog.example.org (WordPress\'s default)', $fields['postbag_default_from']['value'] );
		add_filter(
			'wp_mail_from',
			static function (): string {
				return 'filtered@example.org';
			}
		);
		$fields = $this->plugin->admin()->debug_information( array() )['postbag']['fields'];
		$this->assertSame( 'filtered@example.org (a wp_mail_from filter)', $fields['postbag_default_from']['value'] );
	}
}
