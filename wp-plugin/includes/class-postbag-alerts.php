<?php
/**
 * Tells the site admin when mail fails, is quarantined or is stuck, and once a week how it went.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Alerts by kind (`failed`, `quarantined`, `stuck`): each event is counted
 * in the `postbag_alerts` option, shown to administrators in a notice until
 * they dismiss it, and mailed to `admin_email` at most once an hour per kind
 * (a later mail summarises what came since). The hourly `postbag_alerts_check`
 * event looks for stuck spooled mail and mails what the hour held back; the
 * weekly `postbag_weekly_summary` event mails the week's counts unless
 * POSTBAG_WEEKLY_SUMMARY is false.
 *
 * Alert mail goes through core's wp_mail() with Postbag's interception off
 * (Postbag_Interceptor::bypass()): an alert about failing mail must not wait
 * in the pipeline that fails.
 */
final class Postbag_Alerts {

	const OPTION = 'postbag_alerts';

	const CHECK_HOOK = 'postbag_alerts_check';

	const WEEKLY_HOOK = 'postbag_weekly_summary';

	const DISMISS_ACTION = 'postbag_dismiss_alerts';

	/** User meta: when the user last dismissed the alerts notice. */
	const SEEN_META = 'postbag_alerts_seen';

	const KINDS = array( 'failed', 'quarantined', 'stuck' );

	/** Reasons kept per kind for the notice and the mail. */
	const EXAMPLES = 5;

	/** @var Postbag_Interceptor */
	private $interceptor;

	/** @var Postbag_Site_Health */
	private $health;

	/** @var callable(int): array<string, int>|null */
	private $counts;

	/** @var bool */
	private $weekly;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Interceptor $interceptor Turned off while an alert is mailed.
	 * @param Postbag_Site_Health $health      Knows which spooled mail is stuck.
	 * @param callable|null       $counts      Postbag_Mail_Log::counts(), for the weekly summary; null: none.
	 * @param bool                $weekly      POSTBAG_WEEKLY_SUMMARY.
	 * @param callable|null       $clock       Unix time; default time().
	 */
	public function __construct( Postbag_Interceptor $interceptor, Postbag_Site_Health $health, ?callable $counts, bool $weekly, ?callable $clock = null ) {
		$this->interceptor = $interceptor;
		$this->health      = $health;
		$this->counts      = $counts;
		$this->weekly      = $weekly;
		$this->clock       = $clock ?? 'time';
	}

	public function init(): void {
		add_action( 'postbag_mail_status_changed', array( $this, 'status_changed' ), 10, 2 );
		add_action( self::CHECK_HOOK, array( $this, 'check' ) );
		add_action( self::WEEKLY_HOOK, array( $this, 'weekly_summary' ) );
		add_action( 'admin_notices', array( $this, 'render_notice' ) );
		add_action( 'network_admin_notices', array( $this, 'render_notice' ) );
		add_action( 'admin_post_' . self::DISMISS_ACTION, array( $this, 'dismiss_request' ) );
		// A site updated without reactivating gets its events on the next admin page (cron is autoloaded: cheap).
		add_action( 'admin_init', array( __CLASS__, 'schedule' ) );
	}

	public function remove(): void {
		remove_action( 'postbag_mail_status_changed', array( $this, 'status_changed' ), 10 );
		remove_action( self::CHECK_HOOK, array( $this, 'check' ) );
		remove_action( self::WEEKLY_HOOK, array( $this, 'weekly_summary' ) );
		remove_action( 'admin_notices', array( $this, 'render_notice' ) );
		remove_action( 'network_admin_notices', array( $this, 'render_notice' ) );
		remove_action( 'admin_post_' . self::DISMISS_ACTION, array( $this, 'dismiss_request' ) );
		remove_action( 'admin_init', array( __CLASS__, 'schedule' ) );
	}

	/** Activation: the hourly check and the weekly summary. */
	public static function schedule(): void {
		if ( ! wp_next_scheduled( self::CHECK_HOOK ) ) {
			wp_schedule_event( time() + HOUR_IN_SECONDS, 'hourly', self::CHECK_HOOK );
		}
		if ( ! wp_next_scheduled( self::WEEKLY_HOOK ) ) {
			wp_schedule_event( time() + WEEK_IN_SECONDS, 'weekly', self::WEEKLY_HOOK );
		}
	}

	/** Deactivation and uninstall. */
	public static function unschedule(): void {
		wp_clear_scheduled_hook( self::CHECK_HOOK );
		wp_clear_scheduled_hook( self::WEEKLY_HOOK );
	}

	/**
	 * A log row changed status: failed and quarantined mail is alerted.
	 *
	 * @param array  $row        The row after the change (mail_id, subject, recipient, reason, ...).
	 * @param string $old_status Its status before.
	 */
	public function status_changed( $row, $old_status ): void {
		$status = (string) ( $row['status'] ?? '' );
		if ( ! in_array( $status, array( 'failed', 'quarantined' ), true ) || $status === $old_status ) {
			return;
		}
		/* translators: 1: subject, 2: recipient, 3: reason */
		$this->record( $status, 1, sprintf( __( '"%1$s" to %2$s: %3$s', 'postbag' ), (string) ( $row['subject'] ?? '' ), (string) ( $row['recipient'] ?? '' ), (string) ( $row['reason'] ?? '' ) ) );
		$this->mail_due( $status );
	}

	/** The hourly check: stuck spooled mail, and alerts held back by the hourly limit. */
	public function check(): void {
		$stuck = $this->health->stuck_batches();
		if ( $stuck ) {
			$oldest = reset( $stuck );
			/* translators: 1: number of mails, 2: error message */
			$this->record( 'stuck', array_sum( array_column( $stuck, 'mails' ) ), sprintf( __( '%1$d mail(s) waiting in the spool; last error: %2$s', 'postbag' ), array_sum( array_column( $stuck, 'mails' ) ), (string) ( $oldest['last_error'] ?? '' ) ) );
		} else {
			$unreceipted = $this->health->unreceipted_mails();
			if ( $unreceipted > 0 ) {
				/* translators: %d: number of mails */
				$this->record( 'stuck', $unreceipted, sprintf( __( '%d mail(s) uploaded with no receipt from the sender: is it deployed and wired (postbag wire)?', 'postbag' ), $unreceipted ) );
			}
		}
		foreach ( self::KINDS as $kind ) {
			$this->mail_due( $kind );
		}
	}

	/** The weekly summary: counts of the last 7 days from the email log. */
	public function weekly_summary(): bool {
		if ( ! $this->weekly || null === $this->counts ) {
			return false;
		}
		$counts = ( $this->counts )( (int) ( $this->clock )() - WEEK_IN_SECONDS );
		$lines  = array();
		foreach ( $counts as $status => $count ) {
			$lines[] = sprintf( '%-12s %d', $status . ':', $count );
		}
		$body = sprintf(
			/* translators: 1: site URL, 2: counts, one per line */
			__( "Mail sent through Postbag from %1\$s in the last 7 days:\n\n%2\$s\n\nThe email log on the Postbag screen has every mail. Turn this summary off with define( 'POSTBAG_WEEKLY_SUMMARY', false ); in wp-config.php.", 'postbag' ),
			home_url(),
			implode( "\n", $lines )
		);
		/* translators: %s: site name */
		return $this->mail( sprintf( __( '[%s] Postbag: your weekly mail summary', 'postbag' ), wp_specialchars_decode( get_bloginfo( 'name' ), ENT_QUOTES ) ), $body );
	}

	/**
	 * Alerts waiting, by kind.
	 *
	 * @return array<string, array{count: int, unmailed: int, first_at: int, last_at: int, mailed_at: int, examples: string[]}>
	 */
	public function pending(): array {
		$alerts = get_option( self::OPTION, array() );
		return is_array( $alerts ) ? $alerts : array();
	}

	/**
	 * @param string $kind   One of KINDS.
	 * @param int    $count  Mails concerned.
	 * @param string $reason What happened, for the notice and the mail.
	 */
	private function record( string $kind, int $count, string $reason ): void {
		$now    = (int) ( $this->clock )();
		$alerts = $this->pending();
		$alert  = $alerts[ $kind ] ?? array(
			'count'     => 0,
			'unmailed'  => 0,
			'first_at'  => $now,
			'last_at'   => $now,
			'mailed_at' => 0,
			'examples'  => array(),
		);
		// A stuck spool is a state, not a stream of events: its count is the current one.
		$alert['count']    = 'stuck' === $kind ? $count : $alert['count'] + $count;
		$alert['unmailed'] = 'stuck' === $kind ? $count : $alert['unmailed'] + $count;
		$alert['last_at']  = $now;
		$alert['examples'] = array_slice( array_merge( array( $reason ), $alert['examples'] ), 0, self::EXAMPLES );
		$alerts[ $kind ]   = $alert;
		update_option( self::OPTION, $alerts, false );
	}

	/**
	 * Mails what a kind holds unless one went out within the hour.
	 *
	 * @param string $kind One of KINDS.
	 */
	private function mail_due( string $kind ): void {
		$now    = (int) ( $this->clock )();
		$alerts = $this->pending();
		$alert  = $alerts[ $kind ] ?? null;
		if ( null === $alert || $alert['unmailed'] < 1 || $now - $alert['mailed_at'] < HOUR_IN_SECONDS ) {
			return;
		}
		$this->mail( $this->subject( $kind, $alert['unmailed'] ), $this->body( $kind, $alert ) );
		$alert['mailed_at'] = $now;
		$alert['unmailed']  = 0;
		$alerts[ $kind ]    = $alert;
		update_option( self::OPTION, $alerts, false );
	}

	/**
	 * @param string $kind  One of KINDS.
	 * @param int    $count Mails concerned.
	 */
	private function subject( string $kind, int $count ): string {
		$site = wp_specialchars_decode( get_bloginfo( 'name' ), ENT_QUOTES );
		switch ( $kind ) {
			case 'failed':
				/* translators: 1: site name, 2: number of mails */
				return sprintf( _n( '[%1$s] Postbag: %2$d mail failed', '[%1$s] Postbag: %2$d mails failed', $count, 'postbag' ), $site, $count );
			case 'quarantined':
				/* translators: 1: site name, 2: number of mails */
				return sprintf( _n( '[%1$s] Postbag: %2$d mail was quarantined', '[%1$s] Postbag: %2$d mails were quarantined', $count, 'postbag' ), $site, $count );
			default:
				/* translators: 1: site name, 2: number of mails */
				return sprintf( _n( '[%1$s] Postbag: %2$d mail is stuck (spool or sender)', '[%1$s] Postbag: %2$d mails are stuck (spool or sender)', $count, 'postbag' ), $site, $count );
		}
	}

	/**
	 * @param string $kind  One of KINDS.
	 * @param array  $alert Its record.
	 */
	private function body( string $kind, array $alert ): string {
		return sprintf(
			/* translators: 1: kind of alert, 2: site URL, 3: examples, one per line, 4: Postbag screen URL */
			__( "Postbag alert (%1\$s) on %2\$s.\n\nLatest:\n%3\$s\n\nDetails and actions (resend, re-drive, retry the spool): %4\$s\n\nAt most one such mail is sent an hour; later ones summarise.", 'postbag' ),
			$kind,
			home_url(),
			'- ' . implode( "\n- ", $alert['examples'] ),
			is_multisite() ? network_admin_url( 'admin.php?page=postbag' ) : admin_url( 'admin.php?page=postbag' )
		);
	}

	/**
	 * Sends through core, never through Postbag's own queue.
	 *
	 * @param string $subject Subject.
	 * @param string $body    Plain-text body.
	 */
	private function mail( string $subject, string $body ): bool {
		$to = (string) get_option( 'admin_email' );
		if ( ! is_email( $to ) ) {
			return false;
		}
		return (bool) $this->interceptor->bypass(
			static function () use ( $to, $subject, $body ) {
				return wp_mail( $to, $subject, $body );
			}
		);
	}

	public function render_notice(): void {
		echo $this->notice(); // phpcs:ignore WordPress.Security.EscapeOutput -- escaped in notice().
	}

	/** The alerts this administrator has not dismissed, as escaped HTML. */
	public function notice(): string {
		if ( ! current_user_can( Postbag_Admin::CAPABILITY ) ) {
			return '';
		}
		$seen  = (int) get_user_meta( get_current_user_id(), self::SEEN_META, true );
		$items = '';
		foreach ( $this->pending() as $kind => $alert ) {
			if ( $alert['last_at'] <= $seen || $alert['count'] < 1 ) {
				continue;
			}
			/* translators: 1: kind of alert, 2: number of mails, 3: latest reason */
			$items .= '<li>' . esc_html( sprintf( __( '%1$s: %2$d mail(s); latest: %3$s', 'postbag' ), $kind, $alert['count'], (string) ( $alert['examples'][0] ?? '' ) ) ) . '</li>';
		}
		if ( '' === $items ) {
			return '';
		}
		return sprintf(
			'<div class="notice notice-error" id="postbag-alerts-notice"><p>%s</p><ul>%s</ul><form method="post" action="%s" style="margin:0 0 .5em"><input type="hidden" name="action" value="%s">%s<button type="submit" class="button-link">%s</button></form></div>',
			esc_html__( 'Postbag: mail needs your attention (the site admin was emailed, at most once an hour).', 'postbag' ),
			$items,
			esc_url( admin_url( 'admin-post.php' ) ),
			esc_attr( self::DISMISS_ACTION ),
			wp_nonce_field( self::DISMISS_ACTION, '_wpnonce', true, false ),
			esc_html__( 'Dismiss', 'postbag' )
		);
	}

	public function dismiss_request(): void {
		wp_safe_redirect( $this->handle_dismiss() );
		exit;
	}

	/**
	 * Capability, nonce, then the user's "seen" time: later alerts show again.
	 *
	 * @return string Where to go back to.
	 */
	public function handle_dismiss(): string {
		if ( ! current_user_can( Postbag_Admin::CAPABILITY ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to do that.', 'postbag' ), 403 );
		}
		check_admin_referer( self::DISMISS_ACTION );
		update_user_meta( get_current_user_id(), self::SEEN_META, (int) ( $this->clock )() );
		$referer = wp_get_referer();
		return $referer ? $referer : admin_url();
	}
}
