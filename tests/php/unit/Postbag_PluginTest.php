<?php
/**
 * Settings, the main file, activation, shutdown flush, uninstall.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Config
 * @covers Postbag_Plugin
 */
final class Postbag_PluginTest extends Postbag_Unit_Test_Case {

	protected function tearDown(): void {
		Postbag_Spool_Retry::unschedule();
		Postbag_Plugin::activate(); // As the harness left it: active.
		parent::tearDown();
	}

	public function test_defaults(): void {
		$config = new Postbag_Config();

		$this->assertFalse( $config->is_configured() );
		$this->assertSame( 'queue/', Postbag_Batch::PREFIX );
		$this->assertSame( 'nonpriority@asynchronous.mail', $config->get( 'marker_address' ) );
		$this->assertSame( '[Non-priority!]', $config->get( 'marker_prefix' ) );
		$this->assertSame( 25, $config->get( 'chunk_max_mails' ) );
		$this->assertSame( 5 * 1024 * 1024, $config->get( 'chunk_max_bytes' ) );
		$this->assertSame( 256 * 1024, $config->get( 'inline_attachment_max_bytes' ) );
		$this->assertSame( 'AES256', $config->get( 'sse' ) );
		$this->assertFalse( $config->get( 'path_style' ) );
	}

	public function test_constants_are_read_and_overrides_win(): void {
		$this->assertSame( POSTBAG_SPOOL_DIR, Postbag_Config::from_constants()->get( 'spool_dir' ) );
		$this->assertSame( '/elsewhere', Postbag_Config::from_constants( array( 'spool_dir' => '/elsewhere' ) )->get( 'spool_dir' ) );
	}

	public function test_values_are_cast_like_their_defaults(): void {
		$config = new Postbag_Config(
			array(
				'path_style'      => 'true',
				'chunk_max_mails' => '10',
				'chunk_max_bytes' => 0,
				'bucket'          => ' my-bucket ',
			)
		);

		$this->assertTrue( $config->get( 'path_style' ) );
		$this->assertSame( 10, $config->get( 'chunk_max_mails' ) );
		$this->assertSame( 1, $config->get( 'chunk_max_bytes' ), 'Never zero: at least one byte, so one mail per batch.' );
		$this->assertSame( 'my-bucket', $config->get( 'bucket' ) );
	}

	public function test_the_key_prefix_is_fixed_and_normalised(): void {
		$this->assertSame( 'queue/b.json', Postbag_Batch::key_for( 'b' ), 'No leading slash, one slash after the prefix.' );
		$this->assertSame( 'queue/attachments/b/m/2', Postbag_Batch::attachment_key( 'b', 'm', 2 ) );

		$this->expectException( InvalidArgumentException::class );
		new Postbag_Config( array( 'prefix' => 'outbox' ) ); // POSTBAG_PREFIX is no setting any more.
	}

	public function test_unknown_settings_are_refused(): void {
		$this->expectException( InvalidArgumentException::class );
		new Postbag_Config( array( 'aws_secret_access_key' => 'x' ) );
	}

	public function test_secrets_never_pass_through_the_config(): void {
		$this->assertSame( array(), preg_grep( '/AWS|SECRET|TOKEN/', array_column( Postbag_Config::SETTINGS, 0 ) ) );
		$defined = Postbag_Config::defined_constants();
		$this->assertArrayHasKey( 'POSTBAG_AWS_SECRET_ACCESS_KEY', $defined );
		$this->assertContainsOnly( 'bool', $defined );
	}

	public function test_s3_options_match_the_client(): void {
		$options = ( new Postbag_Config( array( 'bucket' => 'postbag-bucket', 'endpoint' => 'http://127.0.0.1:9', 'path_style' => true ) ) )->s3_options();

		$this->assertSame( array( 'bucket', 'region', 'endpoint', 'path_style', 'sse', 'kms_key_id', 'timeout', 'concurrency', 'proxy' ), array_keys( $options ) );
		$this->assertNull( $options['proxy'], 'no WP_PROXY_HOST here' );
		$this->assertInstanceOf( Postbag_S3_Client::class, new Postbag_S3_Client( $options, Postbag_Credential_Chain::default_chain() ) );
	}

	public function test_s3_client_defaults_match_the_documented_settings(): void {
		$this->assertSame( Postbag_Config::SETTINGS['upload_concurrency'][1], Postbag_S3_Client::DEFAULT_CONCURRENCY );
		$this->assertSame( Postbag_Config::SETTINGS['upload_timeout'][1], Postbag_S3_Client::DEFAULT_TIMEOUT );
	}

	public function test_main_file_header_and_autoloader(): void {
		require_once ABSPATH . 'wp-admin/includes/plugin.php';
		$data = get_plugin_data( POSTBAG_PLUGIN_FILE, false, false );

		$this->assertSame( 'Postbag', $data['Name'] );
		$this->assertSame( '6.1', $data['RequiresWP'] );
		$this->assertSame( '8.0', $data['RequiresPHP'] );
		$this->assertSame( 'postbag', $data['TextDomain'] );
		$this->assertSame( POSTBAG_VERSION, $data['Version'] );
		$this->assertStringContainsString( 'GPLv2', (string) file_get_contents( POSTBAG_PLUGIN_FILE ) );
		$this->assertTrue( class_exists( 'Postbag_Spool_Retry' ) );
		$this->assertFalse( class_exists( 'Postbag_No_Such_Class' ) );
	}

	public function test_activation_schedules_one_hourly_retry_and_deactivation_removes_it(): void {
		Postbag_Spool_Retry::unschedule();

		Postbag_Plugin::activate();
		Postbag_Plugin::activate();

		$event = wp_get_scheduled_event( Postbag_Spool_Retry::HOURLY_HOOK );
		$this->assertSame( 'hourly', $event->schedule );
		$this->assertSame( 1, self::events( Postbag_Spool_Retry::HOURLY_HOOK ) );

		wp_schedule_single_event( time() + 60, Postbag_Spool_Retry::HOOK );
		Postbag_Plugin::deactivate();
		$this->assertFalse( wp_next_scheduled( Postbag_Spool_Retry::HOURLY_HOOK ) );
		$this->assertFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ) );
	}

	public function test_spooling_restores_a_missing_hourly_safety_net(): void {
		Postbag_Spool_Retry::unschedule();
		$this->s3->fail_pattern = '/./';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );

		$this->plugin->flush();

		$this->assertSame( 1, self::events( Postbag_Spool_Retry::HOURLY_HOOK ) );
		$this->assertSame( 1, self::events( Postbag_Spool_Retry::HOOK ) );

		$this->s3->fail_pattern = null;
		$this->now             += 3600;
		do_action( Postbag_Spool_Retry::HOURLY_HOOK );
		$this->assertCount( 1, $this->s3->batches(), 'The hourly event retries too.' );
	}

	/**
	 * @param string $hook Cron hook.
	 * @return int Events scheduled for it.
	 */
	private static function events( string $hook ): int {
		$count = 0;
		foreach ( _get_cron_array() as $hooks ) {
			$count += count( $hooks[ $hook ] ?? array() );
		}
		return $count;
	}

	public function test_shutdown_flushes_the_queue(): void {
		$this->assertSame( 100, has_action( 'shutdown', array( $this->plugin->flusher(), 'on_shutdown' ) ) );
		$this->assertFalse( has_action( 'wp_footer', array( $this->plugin->flusher(), 'on_shutdown' ) ) );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );

		$this->plugin->flusher()->on_shutdown();

		$this->assertCount( 1, $this->s3->batches() );
		$this->assertSame( 0, $this->plugin->queue()->count() );
	}

	public function test_mail_queued_by_later_shutdown_work_is_flushed_too(): void {
		$this->plugin->flusher()->on_shutdown();
		wp_mail( array( 'a@example.net', self::MARKER ), 'Late', 'Body' );

		$this->plugin->flusher()->flush_stragglers();

		$this->assertSame( 'Late', array_values( $this->s3->batches() )[0]['emails'][0]['subject'] );
	}

	public function test_uninstall_removes_cron_spool_and_dismissals(): void {
		$this->s3->fail_pattern = '/./';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$this->plugin->flush();
		update_user_meta( 1, Postbag_Admin::DISMISS_META, '/some/file.php' );
		update_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION, '1' ); // "Discard them when Postbag is deleted".
		$this->assertDirectoryExists( $this->spool_dir );
		$this->assertNotFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ) );

		Postbag_Plugin::uninstall( $this->plugin->spool() );

		$this->assertDirectoryDoesNotExist( $this->spool_dir );
		$this->assertFalse( get_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION ), 'the choice goes with the plugin' );
		$this->assertFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ) );
		$this->assertFalse( wp_next_scheduled( Postbag_Spool_Retry::HOURLY_HOOK ) );
		$this->assertSame( '', get_user_meta( 1, Postbag_Admin::DISMISS_META, true ) );
	}

	public function test_uninstall_keeps_spooled_mail_unless_an_administrator_chose_to_discard_it(): void {
		$this->s3->fail_pattern = '/./';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$this->plugin->flush();
		$batches = glob( $this->spool_dir . '/*.batch.php' );

		Postbag_Plugin::uninstall( $this->plugin->spool() );

		$this->assertCount( 1, $batches );
		$this->assertSame( $batches, glob( $this->spool_dir . '/*.batch.php' ), 'the batch is still on disk' );
		$this->assertSame( 1, Postbag_Admin::spooled( $this->plugin->spool() )['mails'] );
		$this->assertFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'everything else is gone' );
	}

	public function test_uninstall_removes_an_empty_spool_without_asking(): void {
		$this->plugin->spool()->prepare();

		Postbag_Plugin::uninstall( $this->plugin->spool() );

		$this->assertDirectoryDoesNotExist( $this->spool_dir );
	}

	public function test_uninstall_file_is_guarded(): void {
		$php = (string) file_get_contents( dirname( POSTBAG_PLUGIN_FILE ) . '/uninstall.php' );

		$this->assertStringContainsString( "defined( 'WP_UNINSTALL_PLUGIN' )", $php );
		$this->assertStringContainsString( 'Postbag_Plugin::uninstall()', $php );
	}

	public function test_uninstall_file_runs_without_the_main_file(): void {
		$this->s3->fail_pattern = '/./';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$this->plugin->flush();
		update_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION, '1' );
		$this->assertDirectoryExists( $this->spool_dir );
		$log     = Postbag_Test_WordPress::$sandbox->path( 'uninstall.log' );
		$request = new Postbag_Test_Process(
			array( PHP_BINARY, dirname( __DIR__ ) . '/integration/requests/uninstall-plugin.php', Postbag_Test_WordPress::$sandbox->path( 'wp-config.php' ), $this->spool_dir ),
			$log,
			null,
			true
		);
		$answer = $request->read_line( 30 );
		$status = $request->wait( 30 );
		wp_cache_flush(); // The child changed the database (cron events, user meta) behind this process's cache,
		clearstatcache(); // and the spool behind its stat cache.

		$this->assertSame( 0, $status, (string) file_get_contents( $log ) );
		$this->assertSame( '{"plugin_loaded_before":false,"uninstalled":true,"spool_left":false}', $answer, (string) file_get_contents( $log ) );
		$this->assertDirectoryDoesNotExist( $this->spool_dir );
	}

	public function test_readme_says_the_wordpress_these_tests_run_and_the_plugins_version(): void {
		$readme = (string) file_get_contents( dirname( POSTBAG_PLUGIN_FILE ) . '/readme.txt' );
		preg_match( '/^(\d+\.\d+)/', $GLOBALS['wp_version'], $tested );

		$this->assertStringContainsString( "\nTested up to: {$tested[1]}\n", $readme, 'the major version of ' . $GLOBALS['wp_version'] );
		$this->assertStringContainsString( "\nStable tag: " . POSTBAG_VERSION . "\n", $readme );
	}
}
