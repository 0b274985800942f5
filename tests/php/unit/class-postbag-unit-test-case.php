<?php
/**
 * Base class of the plugin's unit tests.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-fake-s3-client.php';

/**
 * Runs each test against a fresh Postbag_Plugin with a fake S3 client, a
 * clock the test controls and a temporary spool, installed in place of the
 * site's plugin; hooks and the active plugin are restored afterwards.
 */
abstract class Postbag_Unit_Test_Case extends PHPUnit\Framework\TestCase {
	use Postbag_Test_Site_State;

	const MARKER = 'nonpriority@asynchronous.mail';

	/** @var Postbag_Plugin */
	protected $plugin;

	/** @var Postbag_Fake_S3_Client */
	protected $s3;

	/** @var int The clock's time. */
	protected $now = 1795330800; // 2026-11-22T07:00:00Z

	/** @var string */
	protected $spool_dir;

	/** @var string Temporary directory for files a test makes. */
	protected $temp_dir;

	protected function setUp(): void {
		parent::setUp();
		Postbag_Mail_Log::maybe_upgrade(); // An uninstall test before this one dropped the email log.
		$this->save_site_state();
		$this->temp_dir  = sys_get_temp_dir() . '/postbag-unit-' . bin2hex( random_bytes( 6 ) );
		$this->spool_dir = $this->temp_dir . '/spool';
		mkdir( $this->temp_dir, 0700 );
		$this->take_over_site( $this->make_plugin() );
	}

	protected function tearDown(): void {
		$this->plugin->remove_hooks();
		$this->restore_site_state();
		if ( is_dir( $this->temp_dir ) ) {
			Postbag_Test_Sandbox::remove_tree( $this->temp_dir );
		}
		parent::tearDown();
	}

	/**
	 * Records every postbag_job_uploaded( job id, rows, dropped, suppressed ) from now on.
	 *
	 * @return ArrayObject Each call's arguments, in order.
	 */
	protected static function job_uploads(): ArrayObject {
		$uploads = new ArrayObject();
		add_action(
			'postbag_job_uploaded',
			static function ( ...$args ) use ( $uploads ): void {
				$uploads[] = $args;
			},
			10,
			4
		);
		return $uploads;
	}

	/**
	 * A notify job of the list new-posts to these addresses, held in memory.
	 *
	 * @param string[] $emails Recipients.
	 * @param string   $html   Its HTML template.
	 * @return string|WP_Error What postbag_notify() returns.
	 */
	protected static function notify_new_posts( array $emails, string $html = '<p>Hi</p>' ) {
		return postbag_notify(
			array(
				'recipients' => array_map(
					static function ( string $email ): array {
						return array( 'email' => $email );
					},
					$emails
				),
				'subject'    => 'New post',
				'html'       => $html,
				'from'       => 'Blog <news@example.org>',
				'list'       => 'new-posts',
			)
		);
	}

	/**
	 * A user with the subscriber role, for the capability checks: made on
	 * first use and kept for the whole run.
	 */
	protected static function subscriber(): int {
		$user = get_user_by( 'login', 'postbag-subscriber' );
		return $user ? $user->ID : (int) wp_insert_user(
			array(
				'user_login' => 'postbag-subscriber',
				'user_pass'  => wp_generate_password(),
				'user_email' => 'subscriber@example.org',
				'role'       => 'subscriber',
			)
		);
	}

	/** Empties the email log (one table for the whole run), so a test reads its own rows only. */
	protected static function empty_mail_log(): void {
		$GLOBALS['wpdb']->query( 'TRUNCATE TABLE ' . Postbag_Mail_Log::table() ); // phpcs:ignore WordPress.DB
	}

	/**
	 * Makes wp_die() throw, so a refusal is what the test sees: a
	 * RuntimeException whose message is `wp_die: ` and the text, and whose
	 * code is the HTTP status (the filter goes with the test's other hooks).
	 */
	protected static function wp_die_throws(): void {
		add_filter(
			'wp_die_handler',
			static function () {
				return static function ( $message, $title = '', $args = array() ) {
					throw new RuntimeException( 'wp_die: ' . ( is_wp_error( $message ) ? $message->get_error_message() : wp_strip_all_tags( (string) $message ) ), (int) ( $args['response'] ?? 500 ) );
				};
			}
		);
	}

	/**
	 * A plugin wired to the fake S3 client, the test's clock and spool.
	 *
	 * @param array $settings Postbag_Config settings besides the defaults below.
	 */
	protected function make_plugin( array $settings = array() ): Postbag_Plugin {
		$this->s3     = $this->s3 ?? new Postbag_Fake_S3_Client();
		$config       = new Postbag_Config( array_merge( array( 'bucket' => 'postbag-test' ), $settings ) );
		$this->plugin = new Postbag_Plugin(
			$config,
			$this->s3,
			function (): int {
				return $this->now;
			},
			new Postbag_Spool( $this->spool_dir )
		);
		return $this->plugin;
	}

	/**
	 * Replaces the plugin under test, e.g. with other settings.
	 *
	 * @param array $settings Postbag_Config settings.
	 */
	protected function use_settings( array $settings ): void {
		$this->plugin->remove_hooks();
		Postbag_Plugin::replace( $this->make_plugin( $settings ) );
	}

	/**
	 * Flushes, then writes the email log's rows as the end of the request
	 * does (Postbag_Log_Recorder holds them until then).
	 */
	protected function flush_and_log(): void {
		$this->plugin->flush();
		$this->plugin->log_recorder()->write_pending();
	}

	/**
	 * Flushes and returns the batch files uploaded.
	 *
	 * @return array[] Decoded batches, in upload order.
	 */
	protected function flush_batches(): array {
		$this->plugin->flush();
		return array_values( $this->s3->batches() );
	}

	/**
	 * @param string $name     File name.
	 * @param string $contents Contents.
	 * @return string Path.
	 */
	protected function temp_file( string $name, string $contents ): string {
		$path = $this->temp_dir . '/' . $name;
		file_put_contents( $path, $contents );
		return $path;
	}
}
