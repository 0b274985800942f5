<?php
/**
 * Wires Postbag's services together.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Builds every service from the settings and registers their hooks. The S3
 * client, clock and spool are injected with defaults so tests can swap them:
 *
 *     Postbag_Plugin::replace( new Postbag_Plugin( $config, $fake_s3, $clock, $spool ) );
 */
final class Postbag_Plugin {

	/** @var self|null */
	private static $instance;

	/** @var Postbag_Config */
	private $config;

	/** @var Postbag_Queue */
	private $queue;

	/** @var Postbag_Interceptor */
	private $interceptor;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Spool_Retry */
	private $retry;

	/** @var Postbag_Flusher */
	private $flusher;

	/** @var Postbag_Jobs */
	private $jobs;

	/** @var Postbag_Override_Detector */
	private $detector;

	/** @var Postbag_Admin */
	private $admin;

	/** @var Postbag_Site_Health */
	private $health;

	/** @var Postbag_From */
	private $from;

	/** @var Postbag_Alerts */
	private $alerts;

	/** @var Postbag_Mail_Log */
	private $log;

	/** @var Postbag_Log_Recorder */
	private $recorder;

	/** @var Postbag_Log_Sync */
	private $log_sync;

	/** @var Postbag_Console */
	private $console;

	/** @var Postbag_Rest */
	private $rest;

	/** @var Postbag_Screen */
	private $screen;

	/** @var Postbag_Suppression_Inbox Suppression changes on their way to the sender, its list on the way back. */
	private $inbox;

	/** @var Postbag_Unsubscribe_Endpoint */
	private $unsubscribe;

	/** @var Postbag_Suppression_Routes */
	private $suppression_routes;

	/** @var Postbag_List_Unsubscribe */
	private $lists;

	/** @var Postbag_Unsubscribe_Health */
	private $unsubscribe_health;

	/** @var Postbag_Schedule_Controls Control objects of held jobs and batches. */
	private $controls;

	/** @var Postbag_Schedules Scheduled jobs and batches. */
	private $schedules;

	/** @var Postbag_Schedule_Rest */
	private $schedule_rest;

	/**
	 * @param Postbag_Config|null  $config    Settings; default: wp-config.php constants.
	 * @param object|null          $s3_client Anything with Postbag_S3_Client's put_objects() and get_object(); default: made from $config on first use.
	 * @param callable|null        $clock     Returns the Unix time; default time().
	 * @param Postbag_Spool|null   $spool     Default: POSTBAG_SPOOL_DIR or Postbag_Spool::default_dir().
	 * @param Postbag_Memory_Budget|null $memory When to flush before the request ends; default: against memory_limit.
	 */
	public function __construct( ?Postbag_Config $config = null, ?object $s3_client = null, ?callable $clock = null, ?Postbag_Spool $spool = null, ?Postbag_Memory_Budget $memory = null ) {
		$this->config = $config ?? Postbag_Config::from_constants();
		$clock        = $clock ?? 'time';
		$this->queue  = new Postbag_Queue( $this->config->get( 'chunk_max_mails' ), $this->config->get( 'chunk_max_bytes' ), 64 * 1024 * 1024, $memory ?? new Postbag_Memory_Budget() );
		$this->spool  = $spool ?? new Postbag_Spool( $this->config->get( 'spool_dir' ) );
		$senders      = new Postbag_Allowed_Senders( $this->config->get( 'allowed_senders' ) );
		$times        = new Postbag_Send_Time( $clock );
		$suppressions = new Postbag_Suppressions();
		$tokens       = Postbag_Unsubscribe_Token::from_constants( $clock );
		$this->lists  = new Postbag_List_Unsubscribe( $tokens, $suppressions, $this->config->get( 'unsubscribe_mailto' ) );

		$this->interceptor = new Postbag_Interceptor(
			$this->queue,
			new Postbag_Marker( $this->config->get( 'marker_address' ), $this->config->get( 'marker_prefix' ) ),
			new Postbag_Attachment_Reader( $this->config->get( 'inline_attachment_max_bytes' ) ),
			$senders,
			$times,
			$this->lists
		);
		$s3       = null === $s3_client ? array( $this, 'make_s3_client' ) : static function () use ( $s3_client ) {
			return $s3_client;
		};
		$uploader = new Postbag_Batch_Uploader( $s3 );
		$sync           = new Postbag_Sync_Sender( $this->interceptor );
		$this->retry    = new Postbag_Spool_Retry( $this->spool, $uploader, $sync, $clock );
		$this->jobs     = new Postbag_Jobs(
			$this->spool,
			new Postbag_Notify_Args( $senders, $this->interceptor, new Postbag_Attachment_Reader( $this->config->get( 'inline_attachment_max_bytes' ) ), $times ),
			$uploader,
			$this->retry,
			$clock,
			null,
			$this->lists
		);
		$this->log      = new Postbag_Mail_Log( $clock, $this->config->get( 'log_days' ) );
		$this->recorder = new Postbag_Log_Recorder( $this->log );
		$this->log_sync = new Postbag_Log_Sync( $this->log, $uploader, $this->jobs, $clock );
		$this->console  = new Postbag_Console( $this, $this->log, $this->log_sync, $uploader, $clock );
		$this->rest     = new Postbag_Rest( $this->console );
		$this->screen   = new Postbag_Screen( $this->console );
		$this->flusher  = new Postbag_Flusher( $this->queue, $uploader, $this->retry, $sync, $clock, $this->jobs );
		$this->queue->when_full( array( $this->flusher, 'flush' ) );
		$this->detector = new Postbag_Override_Detector();
		$this->admin    = new Postbag_Admin( $this->config, $this->spool, $this->retry, $this->detector, $this->jobs );
		$this->from     = new Postbag_From( $this->config->get( 'from' ), $this->interceptor );
		$this->health   = new Postbag_Site_Health(
			$this->spool,
			$senders,
			$this->interceptor,
			array(
				'probe'         => $this->config->is_configured() ? new Postbag_Bucket_Probe( $s3, $this->config->get( 'bucket' ) . '@' . $this->config->get( 'endpoint' ), $clock ) : null,
				'counts'        => array( $this->log, 'counts' ),
				'unreceipted'   => array( $this->log, 'unreceipted' ),
				'from'          => $this->from,
				'stuck_minutes' => $this->config->get( 'stuck_after_minutes' ),
				'clock'         => $clock,
			)
		);
		$this->alerts   = new Postbag_Alerts( $this->interceptor, $this->health, array( $this->log, 'counts' ), $this->config->get( 'weekly_summary' ), $clock );

		$this->controls           = new Postbag_Schedule_Controls( $this->spool, $uploader, $this->retry, $clock );
		$this->inbox              = new Postbag_Suppression_Inbox( $this->spool, $uploader, $this->controls, $suppressions, $clock );
		$this->unsubscribe        = new Postbag_Unsubscribe_Endpoint( $tokens, $this->inbox, $suppressions, $clock );
		$this->suppression_routes = new Postbag_Suppression_Routes( $suppressions, $this->inbox );
		$this->unsubscribe_health = new Postbag_Unsubscribe_Health( $this->lists, $this->inbox, $clock );

		$this->schedules     = new Postbag_Schedules( $this->spool, $this->controls, $times, $clock );
		$this->schedule_rest = new Postbag_Schedule_Rest( $this->schedules );
	}

	/** The plugin of this request, built from wp-config.php on first use. */
	public static function instance(): self {
		if ( null === self::$instance ) {
			self::$instance = new self();
		}
		return self::$instance;
	}

	/**
	 * Makes `$plugin` the active one: the current one's hooks are removed and
	 * the new one's added. For tests and benchmarks.
	 *
	 * @param self $plugin Plugin to activate.
	 * @return self|null The plugin it replaced.
	 */
	public static function replace( self $plugin ): ?self {
		$previous = self::$instance;
		if ( null !== $previous ) {
			$previous->remove_hooks();
		}
		self::$instance = $plugin;
		$plugin->init();
		return $previous;
	}

	public function init(): void {
		$this->interceptor->init();
		$this->flusher->init();
		$this->retry->init();
		$this->jobs->init();
		$this->detector->init();
		$this->admin->init();
		$this->health->init();
		$this->from->init();
		$this->alerts->init();
		$this->log->init();
		$this->recorder->init();
		$this->log_sync->init();
		$this->rest->init();
		$this->screen->init();
		$this->inbox->init();
		$this->unsubscribe->init();
		$this->suppression_routes->init();
		$this->unsubscribe_health->init();
		$this->controls->init();
		$this->schedules->init();
		$this->schedule_rest->init();
	}

	public function remove_hooks(): void {
		$this->interceptor->remove();
		$this->flusher->remove();
		$this->retry->remove();
		$this->jobs->remove();
		$this->detector->remove();
		$this->admin->remove();
		$this->health->remove();
		$this->from->remove();
		$this->alerts->remove();
		$this->log->remove();
		$this->recorder->remove();
		$this->log_sync->remove();
		$this->rest->remove();
		$this->screen->remove();
		$this->inbox->remove();
		$this->unsubscribe->remove();
		$this->suppression_routes->remove();
		$this->unsubscribe_health->remove();
		$this->controls->remove();
		$this->schedules->remove();
		$this->schedule_rest->remove();
	}

	/**
	 * Uploads what is queued now (otherwise done on `shutdown`).
	 *
	 * @return array<string, string> Batch id => why its upload failed; a batch absent from it was uploaded.
	 */
	public function flush(): array {
		return $this->flusher->flush();
	}

	/**
	 * Retries spooled batches (what the `postbag_retry_spool` cron event runs).
	 *
	 * @param bool $force Ignore the backoff.
	 * @return array{uploaded: int, failed: int, sent: int}
	 */
	public function retry_spool( bool $force = false ): array {
		return $this->retry->run( $force );
	}

	public function config(): Postbag_Config {
		return $this->config;
	}

	public function queue(): Postbag_Queue {
		return $this->queue;
	}

	public function spool(): Postbag_Spool {
		return $this->spool;
	}

	public function interceptor(): Postbag_Interceptor {
		return $this->interceptor;
	}

	public function flusher(): Postbag_Flusher {
		return $this->flusher;
	}

	/** Notify jobs: postbag_notify() and the streaming after the response (stream_pending()). */
	public function jobs(): Postbag_Jobs {
		return $this->jobs;
	}

	public function admin(): Postbag_Admin {
		return $this->admin;
	}

	/**
	 * The real S3 client, made on the first upload of a request.
	 *
	 * @throws RuntimeException When no bucket is configured (the batches are spooled).
	 */
	public function make_s3_client(): Postbag_S3_Client {
		if ( ! $this->config->is_configured() ) {
			throw new RuntimeException( 'POSTBAG_BUCKET is not defined in wp-config.php' );
		}
		return new Postbag_S3_Client( $this->config->s3_options(), Postbag_Credential_Chain::default_chain() );
	}

	/** Suppression changes waiting for S3, and the sender's list mirrored (send(), sync()). */
	public function suppression_inbox(): Postbag_Suppression_Inbox {
		return $this->inbox;
	}

	/** Unsubscribe links and the suppression check of list mail. */
	public function lists(): Postbag_List_Unsubscribe {
		return $this->lists;
	}

	/** Scheduled jobs and batches: the listing, reschedule and cancel. */
	public function schedules(): Postbag_Schedules {
		return $this->schedules;
	}

	/** Control objects waiting for S3 (run() puts those due). */
	public function schedule_controls(): Postbag_Schedule_Controls {
		return $this->controls;
	}

	/** The email log (one row per mail and per job). */
	public function log(): Postbag_Mail_Log {
		return $this->log;
	}

	public function log_recorder(): Postbag_Log_Recorder {
		return $this->recorder;
	}

	public function log_sync(): Postbag_Log_Sync {
		return $this->log_sync;
	}

	/** The service behind the Postbag screen and the postbag/v1 REST API. */
	public function console(): Postbag_Console {
		return $this->console;
	}

	public function site_health(): Postbag_Site_Health {
		return $this->health;
	}

	/** Alert notices and mails to the site admin, and the weekly summary. */
	public function alerts(): Postbag_Alerts {
		return $this->alerts;
	}

	/**
	 * Activation: the hourly safety net that retries the spool even if a
	 * single event was lost, and the spool itself, made ready and rid of any
	 * unprotected file an earlier version left (Site Health reports what
	 * could not be done). WordPress passes whether the activation is
	 * network-wide, which changes nothing here.
	 */
	public static function activate(): void {
		Postbag_Spool_Retry::ensure_hourly();
		Postbag_Alerts::schedule();
		Postbag_Mail_Log::install();
		Postbag_Suppressions::install();
		self::prepare_spool( new Postbag_Spool( Postbag_Config::from_constants()->get( 'spool_dir' ) ) );
	}

	/**
	 * @param Postbag_Spool $spool The spool to make ready.
	 */
	public static function prepare_spool( Postbag_Spool $spool ): void {
		try {
			$spool->prepare();
			$spool->upgrade();
		} catch ( Postbag_Spool_Exception $e ) {
			unset( $e ); // Shown by Site Health; activation goes on: uploads work without a spool.
		}
	}

	/**
	 * Uninstall: cron events on every site, the spool (batches and notify jobs
	 * never uploaded go with it only if an administrator chose so on the
	 * Plugins screen; otherwise they stay on disk for a reinstall), per-user notice dismissals, and the email log
	 * (its table and two site options: schema version, last sync). Its settings
	 * live in wp-config.php.
	 *
	 * @param Postbag_Spool|null $spool Default: the configured or default spool of each site.
	 */
	public static function uninstall( ?Postbag_Spool $spool = null ): void {
		delete_metadata( 'user', 0, Postbag_Admin::DISMISS_META, '', true );
		delete_metadata( 'user', 0, Postbag_Alerts::SEEN_META, '', true );
		delete_metadata( 'user', 0, Postbag_Admin::DISMISS_BUCKET_META, '', true );
		$discard = '1' === get_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION );
		delete_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION );
		Postbag_Mail_Log::drop(); // One table for a whole network.
		Postbag_Suppressions::uninstall(); // The same.
		if ( ! is_multisite() ) {
			self::uninstall_site( $spool, $discard );
			return;
		}
		foreach ( get_sites(
			array(
				'fields' => 'ids',
				'number' => 0,
			)
		) as $blog_id ) {
			switch_to_blog( $blog_id );
			self::uninstall_site( $spool, $discard );
			restore_current_blog();
		}
	}

	/**
	 * @param Postbag_Spool|null $spool   See uninstall().
	 * @param bool               $discard Whether an administrator chose to discard spooled mail.
	 */
	private static function uninstall_site( ?Postbag_Spool $spool, bool $discard ): void {
		Postbag_Spool_Retry::unschedule();
		Postbag_Alerts::unschedule();
		delete_option( Postbag_Alerts::OPTION );
		wp_clear_scheduled_hook( Postbag_Jobs::HOOK );
		Postbag_Mail_Log::unschedule();
		$spool = $spool ?? new Postbag_Spool( Postbag_Config::from_constants()->get( 'spool_dir' ) );
		$held  = Postbag_Admin::spooled( $spool );
		// Mail not yet uploaded stays on disk (guarded files, sent by a reinstall) unless an
		// administrator chose on the Plugins screen to discard it (Postbag_Admin::uninstall_notice()).
		if ( $discard || ( ! $held['mails'] && ! $held['jobs'] ) ) {
			$spool->destroy();
		}
	}

	/** Deactivation: no more retries; spooled batches and notify jobs stay on disk for a reactivation. */
	public static function deactivate(): void {
		Postbag_Spool_Retry::unschedule();
		Postbag_Alerts::unschedule();
		Postbag_Mail_Log::unschedule();
		wp_clear_scheduled_hook( Postbag_Jobs::HOOK );
	}
}
