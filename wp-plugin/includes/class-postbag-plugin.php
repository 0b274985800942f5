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

		$this->interceptor = new Postbag_Interceptor(
			$this->queue,
			new Postbag_Marker( $this->config->get( 'marker_address' ), $this->config->get( 'marker_prefix' ) ),
			new Postbag_Attachment_Reader( $this->config->get( 'inline_attachment_max_bytes' ) ),
			$senders
		);
		$uploader = new Postbag_Batch_Uploader(
			null === $s3_client ? array( $this, 'make_s3_client' ) : static function () use ( $s3_client ) {
				return $s3_client;
			}
		);
		$sync           = new Postbag_Sync_Sender( $this->interceptor );
		$this->retry    = new Postbag_Spool_Retry( $this->spool, $uploader, $sync, $clock );
		$this->jobs     = new Postbag_Jobs(
			$this->spool,
			new Postbag_Notify_Args( $senders, $this->interceptor, new Postbag_Attachment_Reader( $this->config->get( 'inline_attachment_max_bytes' ) ) ),
			$uploader,
			$this->retry,
			$clock
		);
		$this->flusher  = new Postbag_Flusher( $this->queue, $uploader, $this->retry, $sync, $clock, $this->jobs );
		$this->queue->when_full( array( $this->flusher, 'flush' ) );
		$this->detector = new Postbag_Override_Detector();
		$this->admin    = new Postbag_Admin( $this->config, $this->spool, $this->retry, $this->detector, $this->jobs );
		$this->health   = new Postbag_Site_Health( $this->spool, $senders, $this->interceptor );
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
	}

	public function remove_hooks(): void {
		$this->interceptor->remove();
		$this->flusher->remove();
		$this->retry->remove();
		$this->jobs->remove();
		$this->detector->remove();
		$this->admin->remove();
		$this->health->remove();
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

	public function site_health(): Postbag_Site_Health {
		return $this->health;
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
	 * never uploaded go with it) and per-user notice dismissals. Postbag keeps no options or
	 * transients: its settings live in wp-config.php.
	 *
	 * @param Postbag_Spool|null $spool Default: the configured or default spool of each site.
	 */
	public static function uninstall( ?Postbag_Spool $spool = null ): void {
		delete_metadata( 'user', 0, Postbag_Admin::DISMISS_META, '', true );
		if ( ! is_multisite() ) {
			self::uninstall_site( $spool );
			return;
		}
		foreach ( get_sites(
			array(
				'fields' => 'ids',
				'number' => 0,
			)
		) as $blog_id ) {
			switch_to_blog( $blog_id );
			self::uninstall_site( $spool );
			restore_current_blog();
		}
	}

	/**
	 * @param Postbag_Spool|null $spool See uninstall().
	 */
	private static function uninstall_site( ?Postbag_Spool $spool ): void {
		Postbag_Spool_Retry::unschedule();
		wp_clear_scheduled_hook( Postbag_Jobs::HOOK );
		( $spool ?? new Postbag_Spool( Postbag_Config::from_constants()->get( 'spool_dir' ) ) )->destroy();
	}

	/** Deactivation: no more retries; spooled batches and notify jobs stay on disk for a reactivation. */
	public static function deactivate(): void {
		Postbag_Spool_Retry::unschedule();
		wp_clear_scheduled_hook( Postbag_Jobs::HOOK );
	}
}
