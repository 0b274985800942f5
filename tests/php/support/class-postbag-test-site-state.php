<?php
/**
 * The site state a test of the plugin may change, saved and put back.
 *
 * @package Postbag\Tests
 */

/**
 * Shared by Postbag_Unit_Test_Case and Postbag_Test_Live_Case: saves the
 * site's hooks, puts a test's plugin in place of the site's and records what
 * it reports (wp_mail_failed, the postbag_batch_* and postbag_job_* actions); afterwards the
 * previous plugin and the hooks come back. No single retry event is planned
 * when a test starts or after it ends (every flush and every notify job plans one).
 */
trait Postbag_Test_Site_State {

	/** The plugin's actions a test may look at in `$fired`. */
	private static $reported = array(
		'postbag_batch_uploaded',
		'postbag_batch_spooled',
		'postbag_batch_sent_synchronously',
		'postbag_job_queued',
		'postbag_job_uploaded',
		'postbag_job_spooled',
		'postbag_job_failed',
		'postbag_job_cancelled',
		'postbag_job_scheduled',
		'postbag_batch_scheduled',
	);

	/** @var array<string, array[]> Postbag actions fired: name => argument lists. */
	protected $fired = array();

	/** @var WP_Error[] What wp_mail_failed received. */
	protected $failures = array();

	/** @var Postbag_Plugin|null The site's plugin before the test's. */
	private $previous;

	/** @var array<string, WP_Hook>|null */
	private $hooks;

	/**
	 * Call first in setUp(): every hook added from here on goes in tearDown().
	 */
	protected function save_site_state(): void {
		Postbag_Test_WordPress::require_plugin();
		$this->hooks = array_map(
			static function ( WP_Hook $hook ): WP_Hook {
				return clone $hook;
			},
			$GLOBALS['wp_filter']
		);
		self::clear_retry_events();
	}

	/**
	 * Makes `$plugin` the site's plugin and starts recording what it reports;
	 * no mail sent so far.
	 */
	protected function take_over_site( Postbag_Plugin $plugin ): void {
		$this->previous = Postbag_Plugin::replace( $plugin );

		add_action(
			'wp_mail_failed',
			function ( WP_Error $error ): void {
				$this->failures[] = $error;
			}
		);
		foreach ( self::$reported as $action ) {
			add_action(
				$action,
				function ( ...$args ) use ( $action ): void {
					$this->fired[ $action ][] = $args;
				},
				10,
				3
			);
		}
		Postbag_Test_Mailer::current()->sent = array();
	}

	/**
	 * The argument lists `$action` was fired with, in order.
	 */
	protected function fired_with( string $action ): array {
		return $this->fired[ $action ] ?? array();
	}

	/**
	 * Call in tearDown(), after the test's plugin removed its hooks: the
	 * previous plugin and the saved hooks come back.
	 */
	protected function restore_site_state(): void {
		self::clear_retry_events();
		if ( null !== $this->previous ) {
			Postbag_Plugin::replace( $this->previous );
		}
		if ( null !== $this->hooks ) {
			$GLOBALS['wp_filter'] = $this->hooks;
		}
	}

	/**
	 * Removes the retry events a test left, this process's and those a
	 * PHP-FPM worker of a live test scheduled: the worker wrote the cron
	 * option behind this process's object cache, so the cache goes first.
	 * A leftover event would make the next test's worker's own retry a
	 * duplicate (wp_schedule_single_event() refuses one within ten minutes
	 * of another) and that test would run the stale one, too early.
	 */
	private static function clear_retry_events(): void {
		wp_cache_flush();
		wp_clear_scheduled_hook( Postbag_Spool_Retry::HOOK );
		wp_clear_scheduled_hook( Postbag_Jobs::HOOK );
	}
}
