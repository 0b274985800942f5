<?php
/**
 * Admin notices and the admin's actions.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Tells administrators what needs them: a missing bucket setting, batches
 * that keep failing in the spool (with the reason and a "Retry now" button),
 * a wp_mail() replaced by another plugin. Each action checks, in this order,
 * the capability, the nonce, then reads its (sanitized) input.
 */
final class Postbag_Admin {

	const CAPABILITY = 'manage_options';

	const RETRY_ACTION = 'postbag_retry_spool';

	const DISMISS_ACTION = 'postbag_dismiss_override';

	const FORGET_JOB_ACTION = 'postbag_forget_job';

	/** User meta: the overriding file the user dismissed the notice for. */
	const DISMISS_META = 'postbag_dismissed_override';

	const DISMISS_BUCKET_ACTION = 'postbag_dismiss_bucket';

	/** User meta: the user dismissed the missing-bucket notice (outside the Postbag and Plugins screens). */
	const DISMISS_BUCKET_META = 'postbag_dismissed_bucket';

	const SPOOL_ON_UNINSTALL_ACTION = 'postbag_spool_on_uninstall';

	/** Site option: '1' once an administrator chose to discard spooled mail when the plugin is deleted. */
	const DISCARD_SPOOL_OPTION = 'postbag_discard_spool_on_uninstall';

	/** Screens where the missing-bucket notice cannot be dismissed: where the fix is made. */
	const BUCKET_NOTICE_SCREENS = array( 'plugins', 'plugins-network', 'toplevel_page_postbag', 'toplevel_page_postbag-network' );

	/** @var Postbag_Config */
	private $config;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Spool_Retry */
	private $retry;

	/** @var Postbag_Override_Detector */
	private $detector;

	/** @var Postbag_Jobs|null */
	private $jobs;

	/**
	 * @param Postbag_Config            $config   Settings.
	 * @param Postbag_Spool             $spool    The spool, for its state.
	 * @param Postbag_Spool_Retry       $retry    Runs "Retry now".
	 * @param Postbag_Override_Detector $detector Finds a replaced wp_mail().
	 * @param Postbag_Jobs|null         $jobs     Notify jobs, for their notices.
	 */
	public function __construct( Postbag_Config $config, Postbag_Spool $spool, Postbag_Spool_Retry $retry, Postbag_Override_Detector $detector, ?Postbag_Jobs $jobs = null ) {
		$this->config   = $config;
		$this->spool    = $spool;
		$this->retry    = $retry;
		$this->detector = $detector;
		$this->jobs     = $jobs;
	}

	public function init(): void {
		add_action( 'admin_notices', array( $this, 'render_notices' ) );
		add_action( 'network_admin_notices', array( $this, 'render_notices' ) );
		add_action( 'admin_post_' . self::RETRY_ACTION, array( $this, 'retry_request' ) );
		add_action( 'admin_post_' . self::DISMISS_ACTION, array( $this, 'dismiss_request' ) );
		add_action( 'admin_post_' . self::FORGET_JOB_ACTION, array( $this, 'forget_job_request' ) );
		add_action( 'admin_post_' . self::DISMISS_BUCKET_ACTION, array( $this, 'dismiss_bucket_request' ) );
		add_action( 'admin_post_' . self::SPOOL_ON_UNINSTALL_ACTION, array( $this, 'spool_on_uninstall_request' ) );
		add_filter( 'debug_information', array( $this, 'debug_information' ) );
	}

	public function remove(): void {
		remove_action( 'admin_notices', array( $this, 'render_notices' ) );
		remove_action( 'network_admin_notices', array( $this, 'render_notices' ) );
		remove_action( 'admin_post_' . self::RETRY_ACTION, array( $this, 'retry_request' ) );
		remove_action( 'admin_post_' . self::DISMISS_ACTION, array( $this, 'dismiss_request' ) );
		remove_action( 'admin_post_' . self::FORGET_JOB_ACTION, array( $this, 'forget_job_request' ) );
		remove_action( 'admin_post_' . self::DISMISS_BUCKET_ACTION, array( $this, 'dismiss_bucket_request' ) );
		remove_action( 'admin_post_' . self::SPOOL_ON_UNINSTALL_ACTION, array( $this, 'spool_on_uninstall_request' ) );
		remove_filter( 'debug_information', array( $this, 'debug_information' ) );
	}

	/**
	 * Site Health's Info tab: each setting's value and where it comes from.
	 * Secrets show only whether they are defined.
	 *
	 * @param array $info Sections.
	 * @return array
	 */
	public function debug_information( $info ) {
		$fields = array();
		foreach ( Postbag_Config::SETTINGS as $name => $setting ) {
			$value                  = $this->config->get( $name );
			$fields[ $setting[0] ] = array(
				'label' => $setting[0],
				'value' => ( is_bool( $value ) ? wp_json_encode( $value ) : (string) $value ) . ' ' . ( defined( $setting[0] ) ? __( '(defined in wp-config.php)', 'postbag' ) : __( '(default)', 'postbag' ) ),
			);
		}
		$fields['postbag_default_from'] = array(
			'label' => __( 'From of mail that sets none', 'postbag' ),
			'value' => $this->default_from_source(),
		);
		$fields['postbag_credentials']  = array(
			'label' => __( 'AWS credentials', 'postbag' ),
			'value' => $this->credentials_source(),
		);
		$fields['postbag_proxy']        = array(
			'label' => __( 'Proxy for uploads', 'postbag' ),
			'value' => $this->proxy_source(),
		);
		$unknown                        = Postbag_Config::unknown_constants();
		$fields['postbag_unknown']      = array(
			'label' => __( 'Unknown POSTBAG_* constants (ignored)', 'postbag' ),
			'value' => $unknown ? implode( ', ', $unknown ) : __( 'None', 'postbag' ),
		);
		$fields['postbag_prefix'] = array(
			'label' => __( 'Key prefix', 'postbag' ),
			'value' => Postbag_Batch::PREFIX . ' ' . __( '(fixed)', 'postbag' ),
		);
		// Every constant that is no setting is a secret (the AWS keys, the unsubscribe key): "set" or not, never its value.
		foreach ( array_diff( array_keys( Postbag_Config::defined_constants() ), array_column( Postbag_Config::SETTINGS, 0 ) ) as $secret ) {
			$fields[ $secret ] = array(
				'label'   => $secret,
				'value'   => defined( $secret ) ? __( 'Defined in wp-config.php', 'postbag' ) : __( 'Not defined', 'postbag' ),
				'private' => true,
			);
		}
		$states                   = $this->spool->states();
		$fields['postbag_spool'] = array(
			'label' => __( 'Spool', 'postbag' ),
			/* translators: 1: directory, 2: number of batches, 3: number of mails */
			'value' => sprintf( __( '%1$s: %2$d batch(es), %3$d mail(s) waiting', 'postbag' ), $this->spool->dir(), count( $states ), array_sum( array_column( $states, 'mails' ) ) ),
		);
		if ( null !== $this->jobs ) {
			$fields['postbag_jobs'] = array(
				'label' => __( 'Notify jobs in the spool', 'postbag' ),
				'value' => (string) count( $this->jobs->ids() ),
			);
		}
		$info['postbag'] = array(
			'label'  => __( 'Postbag', 'postbag' ),
			'fields' => $fields,
		);
		return $info;
	}

	/**
	 * Where uploads take their AWS credentials from, first found first
	 * (Postbag_Credential_Chain::default_chain()), without asking an endpoint
	 * and never showing a secret.
	 */
	public function credentials_source(): string {
		list( $key_id, $secret ) = Postbag_Credential_Chain::CONSTANTS;
		if ( defined( $key_id ) && defined( $secret ) ) {
			/* translators: 1, 2: constant names */
			return sprintf( __( 'wp-config.php (%1$s, %2$s)', 'postbag' ), $key_id, $secret );
		}
		if ( '' !== (string) getenv( 'AWS_ACCESS_KEY_ID' ) && '' !== (string) getenv( 'AWS_SECRET_ACCESS_KEY' ) ) {
			return __( 'The environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)', 'postbag' );
		}
		if ( '' !== (string) getenv( 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI' ) || '' !== (string) getenv( 'AWS_CONTAINER_CREDENTIALS_FULL_URI' ) ) {
			return __( 'The container credentials endpoint (ECS, EKS Pod Identity)', 'postbag' );
		}
		if ( 'true' !== strtolower( (string) getenv( 'AWS_EC2_METADATA_DISABLED' ) ) ) {
			return __( 'The EC2 instance role, if there is one: no keys in wp-config.php or the environment', 'postbag' );
		}
		return __( 'None: define POSTBAG_AWS_ACCESS_KEY_ID and POSTBAG_AWS_SECRET_ACCESS_KEY in wp-config.php', 'postbag' );
	}

	/** Whether POSTBAG_ALLOWED_SENDERS (when set) allows the From of mail that sets none. */
	public function default_from_allowed(): bool {
		return ( new Postbag_Allowed_Senders( $this->config->get( 'allowed_senders' ) ) )->allows( Postbag_Plugin::instance()->interceptor()->effective_default_from() );
	}

	/** The From a mail without one gets, and which of POSTBAG_FROM, a wp_mail_from filter or WordPress decided it. */
	public function default_from_source(): string {
		$from = Postbag_Plugin::instance()->interceptor()->effective_default_from();
		if ( '' !== $this->config->get( 'from' ) && Postbag_Header_Parser::split_mailbox( $this->config->get( 'from' ) )[1] === $from ) {
			/* translators: %s: email address */
			return sprintf( __( '%s (POSTBAG_FROM)', 'postbag' ), $from );
		}
		$core = Postbag_Plugin::instance()->interceptor()->default_from();
		/* translators: %s: email address */
		return sprintf( $core === $from ? __( '%s (WordPress\'s default)', 'postbag' ) : __( '%s (a wp_mail_from filter)', 'postbag' ), $from );
	}

	/** WordPress's proxy as uploads use it; the password only as "set". */
	private function proxy_source(): string {
		$proxy = $this->config->s3_options()['proxy'];
		if ( null === $proxy ) {
			return defined( 'WP_PROXY_HOST' ) ? __( 'None (the endpoint is in WP_PROXY_BYPASS_HOSTS)', 'postbag' ) : __( 'None (WP_PROXY_HOST not defined)', 'postbag' );
		}
		/* translators: 1: host, 2: port, 3: whether credentials are set */
		return sprintf( __( '%1$s:%2$d (WP_PROXY_HOST, WP_PROXY_PORT), credentials %3$s', 'postbag' ), $proxy['host'], $proxy['port'], '' === $proxy['auth'] ? __( 'not set', 'postbag' ) : __( 'set', 'postbag' ) );
	}

	public function render_notices(): void {
		echo $this->notices(); // phpcs:ignore WordPress.Security.EscapeOutput -- escaped piece by piece in notices().
	}

	/** The notices the current user should see, as escaped HTML. */
	public function notices(): string {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			return '';
		}
		return $this->bucket_notice() . $this->retried_notice() . $this->spool_notice() . $this->jobs_notices() . $this->override_notice() . $this->uninstall_notice();
	}

	/**
	 * No bucket: always on the Plugins and Postbag screens (where it is
	 * fixed), dismissable per user everywhere else.
	 */
	private function bucket_notice(): string {
		if ( $this->config->is_configured() ) {
			return '';
		}
		$text     = esc_html__( 'Postbag: POSTBAG_BUCKET is not defined in wp-config.php. Non-priority mail waits in the spool until it is.', 'postbag' );
		$fixed_on = in_array( self::screen_id(), self::BUCKET_NOTICE_SCREENS, true );
		if ( $fixed_on ) {
			return self::notice( 'error', $text );
		}
		if ( get_user_meta( get_current_user_id(), self::DISMISS_BUCKET_META, true ) ) {
			return '';
		}
		return self::notice( 'error', $text, self::action_form( self::DISMISS_BUCKET_ACTION, esc_html__( 'Dismiss (still shown on the Plugins screen)', 'postbag' ), 'button-link' ) );
	}

	/**
	 * On the Plugins screen, while mail waits in the spool: deleting the
	 * plugin keeps it on disk unless the administrator chooses to discard
	 * it here (Postbag_Plugin::uninstall()).
	 */
	private function uninstall_notice(): string {
		if ( ! in_array( self::screen_id(), array( 'plugins', 'plugins-network' ), true ) ) {
			return '';
		}
		$held = self::spooled( $this->spool );
		if ( ! $held['mails'] && ! $held['jobs'] ) {
			return '';
		}
		$discard = '1' === get_site_option( self::DISCARD_SPOOL_OPTION );
		$text    = sprintf(
			/* translators: 1: number of mails, 2: number of notify jobs, 3: directory */
			__( 'Postbag holds %1$d mail(s) and %2$d notify job(s) not yet uploaded, in %3$s.', 'postbag' ),
			$held['mails'],
			$held['jobs'],
			$this->spool->dir()
		) . ' ' . ( $discard
			? __( 'You chose to discard them when Postbag is deleted.', 'postbag' )
			: __( 'Deleting Postbag keeps them on disk (a reinstall sends them) unless you choose to discard them.', 'postbag' ) );
		$form = self::action_form(
			self::SPOOL_ON_UNINSTALL_ACTION,
			$discard ? esc_html__( 'Keep them when Postbag is deleted', 'postbag' ) : esc_html__( 'Discard them when Postbag is deleted', 'postbag' ),
			'button',
			array( 'discard' => $discard ? '0' : '1' )
		);
		return self::notice( 'warning', esc_html( $text ), $form );
	}

	/**
	 * What a spool holds: mails in batches, and notify jobs.
	 *
	 * @param Postbag_Spool $spool The spool.
	 * @return array{mails: int, jobs: int}
	 */
	public static function spooled( Postbag_Spool $spool ): array {
		return array(
			'mails' => (int) array_sum( array_column( $spool->states(), 'mails' ) ),
			'jobs'  => count( $spool->names( '*' . Postbag_Jobs::JOB_SUFFIX ) ),
		);
	}

	/** The current admin screen's id, '' outside one. */
	private static function screen_id(): string {
		$screen = function_exists( 'get_current_screen' ) ? get_current_screen() : null;
		return null === $screen ? '' : (string) $screen->id;
	}

	public function dismiss_bucket_request(): void {
		wp_safe_redirect( $this->handle_dismiss_bucket() );
		exit;
	}

	/**
	 * @return string Where to send the admin afterwards.
	 */
	public function handle_dismiss_bucket(): string {
		self::authorize( self::DISMISS_BUCKET_ACTION );
		update_user_meta( get_current_user_id(), self::DISMISS_BUCKET_META, 1 );
		return self::back();
	}

	public function spool_on_uninstall_request(): void {
		wp_safe_redirect( $this->handle_spool_on_uninstall() );
		exit;
	}

	/**
	 * Records whether uninstall discards spooled mail; needs delete_plugins too.
	 *
	 * @return string Where to send the admin afterwards.
	 */
	public function handle_spool_on_uninstall(): string {
		self::authorize( self::SPOOL_ON_UNINSTALL_ACTION );
		if ( ! current_user_can( 'delete_plugins' ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'postbag' ), 403 );
		}
		$discard = isset( $_POST['discard'] ) && '1' === sanitize_key( wp_unslash( $_POST['discard'] ) );
		if ( $discard ) {
			update_site_option( self::DISCARD_SPOOL_OPTION, '1' );
		} else {
			delete_site_option( self::DISCARD_SPOOL_OPTION );
		}
		return self::back();
	}

	/** Runs the "Retry now" button, then goes back to where the admin was. */
	public function retry_request(): void {
		wp_safe_redirect( $this->handle_retry() );
		exit;
	}

	/** Dismisses the override notice, then goes back. */
	public function dismiss_request(): void {
		wp_safe_redirect( $this->handle_dismiss() );
		exit;
	}

	/**
	 * @return string Where to send the admin afterwards.
	 */
	public function handle_retry(): string {
		self::authorize( self::RETRY_ACTION );
		$summary = $this->retry->run( true );
		if ( null !== $this->jobs ) {
			$jobs                 = $this->jobs->stream_pending( null, true );
			$summary['uploaded'] += count( $jobs['uploaded'] );
			$summary['failed']   += count( array_unique( $jobs['waiting'] ) );
		}
		return add_query_arg(
			array(
				'postbag_uploaded' => $summary['uploaded'],
				'postbag_failed'   => $summary['failed'],
			),
			self::back()
		);
	}

	/** Removes a failed notify job, then goes back. */
	public function forget_job_request(): void {
		wp_safe_redirect( $this->handle_forget_job() );
		exit;
	}

	/**
	 * @return string Where to send the admin afterwards.
	 */
	public function handle_forget_job(): string {
		self::authorize( self::FORGET_JOB_ACTION );
		$job_id = isset( $_POST['job'] ) ? sanitize_key( wp_unslash( $_POST['job'] ) ) : '';
		if ( null !== $this->jobs && '' !== $job_id ) {
			$this->jobs->forget_failed( $job_id );
		}
		return self::back();
	}

	/**
	 * @return string Where to send the admin afterwards.
	 */
	public function handle_dismiss(): string {
		self::authorize( self::DISMISS_ACTION );
		$file = isset( $_POST['file'] ) ? sanitize_text_field( wp_unslash( $_POST['file'] ) ) : '';
		update_user_meta( get_current_user_id(), self::DISMISS_META, $file );
		return self::back();
	}

	/** Batches that failed repeatedly, with the latest reason. */
	private function spool_notice(): string {
		/**
		 * Filters after how many failed uploads a spooled batch is shown to administrators.
		 *
		 * @param int $failures Failed attempts; default 3.
		 */
		$threshold = max( 1, (int) apply_filters( 'postbag_notice_after_failures', 3 ) );
		$failing   = array_filter(
			$this->spool->states(),
			static function ( array $state ) use ( $threshold ): bool {
				return ( $state['attempts'] ?? 0 ) >= $threshold;
			}
		);
		if ( ! $failing ) {
			return '';
		}
		$latest = end( $failing );
		$text   = sprintf(
			/* translators: 1: number of batches, 2: number of mails, 3: failed attempts, 4: error message */
			__( 'Postbag could not upload %1$d batch(es) holding %2$d mail(s) to S3 after %3$d attempts; they wait in the spool and are retried automatically. Last error: %4$s', 'postbag' ),
			count( $failing ),
			array_sum( array_column( $failing, 'mails' ) ),
			(int) $latest['attempts'],
			(string) $latest['last_error']
		);
		return self::notice( 'error', esc_html( $text ), self::action_form( self::RETRY_ACTION, esc_html__( 'Retry now', 'postbag' ), 'button' ) );
	}

	/**
	 * Notify jobs waiting for S3 (after a failed upload, or without a bucket),
	 * and each failed job with its reason and a button that removes it.
	 */
	private function jobs_notices(): string {
		if ( null === $this->jobs ) {
			return '';
		}
		$waiting = 0;
		$html    = '';
		foreach ( $this->jobs->states() as $job_id => $state ) {
			if ( 'failed' === $state['status'] ) {
				/* translators: 1: job id, 2: reason */
				$text  = sprintf( __( 'Postbag notify job %1$s failed and was not sent: %2$s', 'postbag' ), $job_id, (string) $state['last_error'] );
				$html .= self::notice( 'error', esc_html( $text ), self::action_form( self::FORGET_JOB_ACTION, esc_html__( 'Dismiss', 'postbag' ), 'button-link', array( 'job' => (string) $job_id ) ) );
			} elseif ( $state['attempts'] > 0 || ! $this->config->is_configured() ) {
				++$waiting;
			}
		}
		if ( $waiting ) {
			/* translators: %d: number of jobs */
			$text = sprintf( _n( '%d notify job is waiting for S3 (notify jobs never fall back to wp_mail).', '%d notify jobs are waiting for S3 (they never fall back to wp_mail).', $waiting, 'postbag' ), $waiting );
			$html = self::notice( 'warning', esc_html( $text ), self::action_form( self::RETRY_ACTION, esc_html__( 'Retry now', 'postbag' ), 'button' ) ) . $html;
		}
		return $html;
	}

	/** The outcome of "Retry now", on the page the admin comes back to. */
	private function retried_notice(): string {
		if ( ! isset( $_GET['postbag_uploaded'], $_GET['postbag_failed'] ) ) { // phpcs:ignore WordPress.Security.NonceVerification -- display only.
			return '';
		}
		$text = sprintf(
			/* translators: 1: batches uploaded, 2: batches still failing */
			__( 'Postbag retried the spool: %1$d batch(es) uploaded, %2$d still failing.', 'postbag' ),
			absint( $_GET['postbag_uploaded'] ), // phpcs:ignore WordPress.Security.NonceVerification
			absint( $_GET['postbag_failed'] ) // phpcs:ignore WordPress.Security.NonceVerification
		);
		return self::notice( 'info', esc_html( $text ) );
	}

	/** A wp_mail() replacement that hides mail from Postbag, unless this user dismissed it. */
	private function override_notice(): string {
		$file = $this->detector->overriding_file();
		if ( null === $file || get_user_meta( get_current_user_id(), self::DISMISS_META, true ) === $file ) {
			return '';
		}
		$form = self::action_form( self::DISMISS_ACTION, esc_html__( 'Dismiss', 'postbag' ), 'button-link', array( 'file' => $file ) );
		return self::notice( 'warning', esc_html( Postbag_Override_Detector::message( $file ) ), $form );
	}

	/**
	 * A one-button form posting to admin-post.php with the action's nonce;
	 * the action's handler checks capability and nonce through authorize().
	 *
	 * @param string                $action Admin-post action, also the nonce action.
	 * @param string                $label  Escaped button label.
	 * @param string                $class  Button class.
	 * @param array<string, string> $fields More hidden fields: name => value, unescaped.
	 */
	private static function action_form( string $action, string $label, string $class, array $fields = array() ): string {
		$hidden = '';
		foreach ( $fields as $name => $value ) {
			$hidden .= sprintf( '<input type="hidden" name="%s" value="%s">', esc_attr( $name ), esc_attr( $value ) );
		}
		return sprintf(
			'<form method="post" action="%s" style="margin:0 0 .5em"><input type="hidden" name="action" value="%s">%s%s<button type="submit" class="%s">%s</button></form>',
			esc_url( admin_url( 'admin-post.php' ) ),
			esc_attr( $action ),
			$hidden,
			wp_nonce_field( $action, '_wpnonce', true, false ),
			esc_attr( $class ),
			$label
		);
	}

	/**
	 * @param string $type  notice-error, notice-warning, ...
	 * @param string $text  Escaped text.
	 * @param string $extra Escaped HTML after the text.
	 */
	private static function notice( string $type, string $text, string $extra = '' ): string {
		return sprintf( '<div class="notice notice-%s"><p>%s</p>%s</div>', esc_attr( $type ), $text, $extra );
	}

	/**
	 * Capability first, then the nonce; both end the request when missing.
	 *
	 * @param string $action Nonce action.
	 */
	private static function authorize( string $action ): void {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'postbag' ), 403 );
		}
		check_admin_referer( $action );
	}

	/** The admin page the request came from, or the dashboard. */
	private static function back(): string {
		$referer = wp_get_referer();
		return remove_query_arg( array( 'postbag_uploaded', 'postbag_failed' ), $referer ? $referer : admin_url() );
	}
}
