<?php
/**
 * The Postbag screen in wp-admin.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * One menu entry, `Postbag` (top level; in the network admin on a network),
 * page slug `postbag`, tab in `&tab=`: overview, log, jobs, suppressions,
 * actions. Server-rendered; its actions are form posts to admin-post.php
 * (action `postbag_console`, field `postbag_do`), each checked in this order:
 * capability (Postbag_Rest::capability()), nonce, input. Two small vanilla
 * scripts call the REST API with core's `wp_rest` nonce (wp.apiFetch): the
 * test mail's status, and the Suppressions tab.
 *
 * Stable hooks for browser tests (ids unless marked as classes):
 *
 * - `postbag-screen` (wrapper), `postbag-tabs` (nav), tab links `postbag-tab-<tab>`
 *   with `aria-current="page"` on the open one, `postbag-notice` (result of an action, role=status)
 * - Overview: `postbag-config` (a dl; each value `postbag-config-<name>`:
 *   bucket, region, credentials, from, bucket-reachable, spool, allowed-senders), `postbag-account`
 *   (`postbag-account-missing` until the sender wrote it), `postbag-counts` (table;
 *   rows `postbag-count-<status>` with cells `.postbag-count-24h` / `.postbag-count-7d`,
 *   bars `.postbag-bar` aria-hidden; delivered, bounced and complained from
 *   the sender's `status/feedback.json`), `postbag-rates` (7-day rates), `postbag-running-jobs` (`.postbag-job` each,
 *   a `<progress>`, `.postbag-eta`), `postbag-synced-at`
 * - Email log: form `postbag-log-search` (search box `postbag-log-search-input`, shown
 *   once the log has rows or a search is made,
 *   `postbag-filter-status`, `postbag-filter-from`, `postbag-filter-to`,
 *   `postbag-filter-submit`), table `postbag-log-table` (rows `.postbag-log-row`
 *   with `data-status`, `data-id`; link `.postbag-log-detail-link`); detail
 *   `postbag-log-detail` (dd ids `postbag-detail-<field>`: status, reason, message-id,
 *   batch, receipt, recipients, subject), button `postbag-resend` (failed rows only)
 * - Jobs: table `postbag-jobs-table` (rows `.postbag-job-row`, `data-job-id`;
 *   buttons `.postbag-cancel-job`)
 * - Scheduled: table `postbag-scheduled-table` and its cancel and reschedule
 *   forms (Postbag_Scheduled_Tab lists their ids)
 * - Suppressions: `postbag-suppressions`, form `postbag-suppression-add`
 *   (`postbag-suppression-address`, `postbag-suppression-scope`), list
 *   `postbag-suppression-list` (buttons `.postbag-suppression-remove`),
 *   `postbag-suppression-status` (aria-live)
 * - Actions: form `postbag-test-form` (`postbag-test-to`, button `postbag-send-test`),
 *   `postbag-test-status` (aria-live, `data-status` = the test mail's status),
 *   buttons `postbag-retry-spool`, `postbag-sync`
 */
final class Postbag_Screen {

	const SLUG = 'postbag';

	const ACTION = 'postbag_console';

	const TABS = array( 'overview', 'log', 'jobs', 'scheduled', 'suppressions', 'actions' );

	/** @var Postbag_Console */
	private $console;

	/** @var Postbag_Scheduled_Tab */
	private $scheduled;

	/**
	 * @param Postbag_Console $console The service.
	 */
	public function __construct( Postbag_Console $console ) {
		$this->console   = $console;
		$this->scheduled = new Postbag_Scheduled_Tab( $console );
	}

	public function init(): void {
		add_action( is_multisite() ? 'network_admin_menu' : 'admin_menu', array( $this, 'add_menu' ) );
		add_action( 'admin_post_' . self::ACTION, array( $this, 'action_request' ) );
	}

	public function remove(): void {
		remove_action( is_multisite() ? 'network_admin_menu' : 'admin_menu', array( $this, 'add_menu' ) );
		remove_action( 'admin_post_' . self::ACTION, array( $this, 'action_request' ) );
	}

	public function add_menu(): void {
		$hook = add_menu_page( __( 'Postbag', 'postbag' ), __( 'Postbag', 'postbag' ), Postbag_Rest::capability(), self::SLUG, array( $this, 'render' ), 'dashicons-email-alt' );
		add_action( 'load-' . $hook, array( $this, 'enqueue' ) );
	}

	/**
	 * @param string $status A log status.
	 */
	public static function status_label( string $status ): string {
		$labels = array(
			'queued'      => __( 'Queued', 'postbag' ),
			'spooled'     => __( 'Waiting in the spool', 'postbag' ),
			'uploaded'    => __( 'Uploaded', 'postbag' ),
			'scheduled'   => __( 'Scheduled', 'postbag' ),
			'sent'        => __( 'Sent', 'postbag' ),
			'delivered'   => __( 'Delivered (SES feedback)', 'postbag' ),
			'failed'      => __( 'Failed', 'postbag' ),
			'suppressed'  => __( 'Suppressed', 'postbag' ),
			'bounced'     => __( 'Bounced', 'postbag' ),
			'complained'  => __( 'Complaint', 'postbag' ),
			'quarantined' => __( 'Quarantined', 'postbag' ),
			'cancelled'   => __( 'Cancelled', 'postbag' ),
		);
		return $labels[ $status ] ?? $status;
	}

	/**
	 * The screen's URL.
	 *
	 * @param string $tab  One of TABS.
	 * @param array  $args More query arguments.
	 */
	public static function url( string $tab = 'overview', array $args = array() ): string {
		$base = is_multisite() ? network_admin_url( 'admin.php' ) : admin_url( 'admin.php' );
		return add_query_arg(
			array_merge(
				array(
					'page' => self::SLUG,
					'tab'  => $tab,
				),
				$args
			),
			$base
		);
	}

	/** The scripts: wp.apiFetch (core's, with the wp_rest nonce) and ours, inline. */
	public function enqueue(): void {
		wp_register_script( 'postbag-screen', false, array( 'wp-api-fetch' ), POSTBAG_VERSION, true );
		wp_enqueue_script( 'postbag-screen' );
		wp_add_inline_script( 'postbag-screen', (string) file_get_contents( __DIR__ . '/screen.js' ) ); // phpcs:ignore WordPress.WP.AlternativeFunctions -- our own file.
		wp_register_style( 'postbag-screen', false, array(), POSTBAG_VERSION );
		wp_enqueue_style( 'postbag-screen' );
		wp_add_inline_style( 'postbag-screen', '.postbag-bar{display:inline-block;height:.8em;background:#2271b1;vertical-align:middle}.postbag-bar-7d{background:#72aee6}.postbag-counts td.postbag-bars{width:40%}.postbag-status-failed,.postbag-status-quarantined,.postbag-status-bounced,.postbag-status-complained{color:#b32d2e;font-weight:600}.postbag-status-sent{color:#007017}#postbag-log-detail dt{font-weight:600}.postbag-job progress{width:20em}' );
	}

	private static function current_tab(): string {
		// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- which tab to show.
		$tab = isset( $_GET['tab'] ) ? sanitize_key( wp_unslash( $_GET['tab'] ) ) : 'overview';
		return in_array( $tab, self::TABS, true ) ? $tab : 'overview';
	}

	public function render(): void {
		if ( ! current_user_can( Postbag_Rest::capability() ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to manage Postbag.', 'postbag' ), 403 );
		}
		$tab = self::current_tab();
		echo '<div class="wrap" id="postbag-screen"><h1>' . esc_html__( 'Postbag', 'postbag' ) . '</h1>';
		$this->render_notice();
		$this->render_tabs( $tab );
		echo '<div id="postbag-tab-panel-' . esc_attr( $tab ) . '">';
		$this->{'render_' . $tab}();
		echo '</div></div>';
	}

	/**
	 * @param string $current The open tab.
	 */
	private function render_tabs( string $current ): void {
		$names = array(
			'overview'     => __( 'Overview', 'postbag' ),
			'log'          => __( 'Email log', 'postbag' ),
			'jobs'         => __( 'Jobs', 'postbag' ),
			'scheduled'    => __( 'Scheduled', 'postbag' ),
			'suppressions' => __( 'Suppressions', 'postbag' ),
			'actions'      => __( 'Actions', 'postbag' ),
		);
		echo '<nav class="nav-tab-wrapper" id="postbag-tabs" aria-label="' . esc_attr__( 'Postbag sections', 'postbag' ) . '">';
		foreach ( $names as $tab => $name ) {
			printf(
				'<a href="%1$s" id="postbag-tab-%2$s" class="nav-tab%3$s"%4$s>%5$s</a>',
				esc_url( self::url( $tab ) ),
				esc_attr( $tab ),
				$tab === $current ? ' nav-tab-active' : '',
				$tab === $current ? ' aria-current="page"' : '',
				esc_html( $name )
			);
		}
		echo '</nav>';
	}

	private function render_notice(): void {
		$key     = 'postbag_notice_' . get_current_user_id();
		$message = get_transient( $key );
		if ( ! is_array( $message ) ) {
			return;
		}
		delete_transient( $key );
		printf( '<div id="postbag-notice" role="status" class="notice notice-%1$s"><p>%2$s</p></div>', 'error' === $message['type'] ? 'error' : 'success', esc_html( $message['text'] ) );
	}

	private function render_overview(): void {
		$status = $this->console->status();
		$config = $status['config'];
		echo '<h2>' . esc_html__( 'Configuration check', 'postbag' ) . '</h2><dl id="postbag-config">';
		$items = array(
			'bucket'           => array( __( 'Bucket', 'postbag' ), $config['configured'] ? $config['bucket'] : __( 'Not defined: define POSTBAG_BUCKET in wp-config.php.', 'postbag' ) ),
			'region'           => array( __( 'Region', 'postbag' ), $config['region'] ),
			'credentials'      => array( __( 'AWS credentials from', 'postbag' ), $config['credentials'] ),
			'from'             => array( __( 'From of mail that sets none', 'postbag' ), $config['from'] . ' — ' . ( '' === $config['allowed_senders'] ? __( 'any From is allowed (POSTBAG_ALLOWED_SENDERS not set)', 'postbag' ) : ( $config['from_allowed'] ? __( 'allowed by POSTBAG_ALLOWED_SENDERS', 'postbag' ) : __( 'NOT allowed by POSTBAG_ALLOWED_SENDERS: such mail is refused', 'postbag' ) ) ) ),
			'bucket-reachable' => array( __( 'Bucket reachable (signed request)', 'postbag' ), $config['bucket_reachable'] ? __( 'Yes', 'postbag' ) : __( 'No', 'postbag' ) . ( '' === $config['bucket_error'] ? '' : ': ' . $config['bucket_error'] ) ),
			/* translators: 1: directory, 2: batches, 3: mails */
			'spool'            => array( __( 'Spool', 'postbag' ), sprintf( __( '%1$s: %2$d batch(es), %3$d mail(s) waiting', 'postbag' ), $config['spool_dir'], $config['spooled_batches'], $config['spooled_mails'] ) . ( $config['spool_problems'] ? ' — ' . implode( ' ', $config['spool_problems'] ) : '' ) ),
			'allowed-senders'  => array( __( 'Allowed senders', 'postbag' ), '' === $config['allowed_senders'] ? __( 'Any (POSTBAG_ALLOWED_SENDERS not set)', 'postbag' ) : $config['allowed_senders'] ),
			/* translators: %d: days */
			'log-days'         => array( __( 'Email log kept', 'postbag' ), sprintf( _n( '%d day', '%d days', $config['log_days'], 'postbag' ), $config['log_days'] ) ),
		);
		foreach ( $items as $id => list( $label, $value ) ) {
			printf( '<dt>%1$s</dt><dd id="postbag-config-%2$s">%3$s</dd>', esc_html( $label ), esc_attr( $id ), esc_html( (string) $value ) );
		}
		echo '</dl>';
		$this->render_account( $status['account'] );
		$this->render_counts( $status['counts'], $status['rates'] );
		$this->render_running( $status['jobs'] );
		printf(
			'<p id="postbag-synced-at">%s</p>',
			/* translators: %s: time */
			esc_html( null === $status['synced_at'] ? __( 'Outcomes not read from the sender yet.', 'postbag' ) : sprintf( __( 'Outcomes last read from the sender at %s (UTC).', 'postbag' ), $status['synced_at'] ) )
		);
	}

	/**
	 * @param array|null $account `status/account.json`.
	 */
	private function render_account( ?array $account ): void {
		echo '<h2>' . esc_html__( 'SES account, as the sender last saw it', 'postbag' ) . '</h2><div id="postbag-account">';
		if ( null === $account ) {
			echo '<p id="postbag-account-missing">' . esc_html__( 'The sender has not written status/account.json yet.', 'postbag' ) . '</p></div>';
			return;
		}
		$production = $account['production_access'] ?? null;
		$rows       = array(
			__( 'Checked at', 'postbag' )               => (string) ( $account['checked_at'] ?? '' ),
			__( 'Send rate (mails/s)', 'postbag' )      => (string) ( $account['max_send_rate'] ?? '' ),
			/* translators: 1: sent, 2: quota */
			__( '24-hour quota used', 'postbag' )       => sprintf( __( '%1$s of %2$s', 'postbag' ), (string) ( $account['sent_last_24_hours'] ?? '?' ), (string) ( $account['max_24_hour_send'] ?? '?' ) ),
			__( 'Access', 'postbag' )                   => null === $production ? __( 'Unknown', 'postbag' ) : ( $production ? __( 'Production', 'postbag' ) : __( 'Sandbox: verified recipients only', 'postbag' ) ),
			__( 'Sending enabled', 'postbag' )          => ! isset( $account['sending_enabled'] ) ? __( 'Unknown', 'postbag' ) : ( $account['sending_enabled'] ? __( 'Yes', 'postbag' ) : __( 'No: the account is paused', 'postbag' ) ),
		);
		echo '<dl>';
		foreach ( $rows as $label => $value ) {
			printf( '<dt>%1$s</dt><dd>%2$s</dd>', esc_html( $label ), esc_html( $value ) );
		}
		echo '</dl></div>';
	}

	/**
	 * A table (what a screen reader reads) with bars beside it (hidden from it).
	 *
	 * Delivered, bounced and complained are SES's feedback as the sender
	 * counted it (`status/feedback.json`), the others the email log's rows.
	 *
	 * @param array{24h: array<string, int>, 7d: array<string, int>} $counts Counts by status.
	 * @param array{bounce_7d: ?float, complaint_7d: ?float, generated_at: ?string} $rates The sender's 7-day rates.
	 */
	private function render_counts( array $counts, array $rates ): void {
		$max = max( 1, max( $counts['7d'] ) );
		echo '<h2 id="postbag-counts-heading">' . esc_html__( 'Mail in the last 24 hours and 7 days', 'postbag' ) . '</h2>';
		echo '<table class="widefat striped postbag-counts" id="postbag-counts" aria-labelledby="postbag-counts-heading"><thead><tr><th scope="col">' . esc_html__( 'Status', 'postbag' ) . '</th><th scope="col">' . esc_html__( '24 hours', 'postbag' ) . '</th><th scope="col">' . esc_html__( '7 days', 'postbag' ) . '</th><td class="postbag-bars" aria-hidden="true"></td></tr></thead><tbody>';
		foreach ( array( 'queued', 'spooled', 'uploaded', 'scheduled', 'sent', 'delivered', 'failed', 'suppressed', 'bounced', 'complained', 'quarantined', 'cancelled' ) as $status ) {
			$day  = (int) $counts['24h'][ $status ];
			$week = (int) $counts['7d'][ $status ];
			printf(
				'<tr id="postbag-count-%1$s"><th scope="row">%2$s</th><td class="postbag-count-24h">%3$d</td><td class="postbag-count-7d">%4$d</td><td class="postbag-bars" aria-hidden="true"><span class="postbag-bar" style="width:%5$s%%"></span><br><span class="postbag-bar postbag-bar-7d" style="width:%6$s%%"></span></td></tr>',
				esc_attr( $status ),
				esc_html( self::status_label( $status ) ),
				$day,
				$week,
				esc_attr( (string) round( 100 * $day / $max, 1 ) ),
				esc_attr( (string) round( 100 * $week / $max, 1 ) )
			);
		}
		echo '</tbody></table>';
		$rate = static function ( ?float $value ): string {
			return null === $value ? __( 'none sent', 'postbag' ) : number_format_i18n( 100 * $value, 2 ) . '%';
		};
		printf(
			'<p id="postbag-rates">%s</p>',
			esc_html(
				null === $rates['generated_at']
					? __( 'Delivered, bounced and complained come from the sender\'s status/feedback.json, not written yet.', 'postbag' )
					/* translators: 1: bounce rate, 2: complaint rate, 3: time */
					: sprintf( __( 'Over 7 days: bounce rate %1$s (SES reviews an account at 10%%), complaint rate %2$s (SES reviews at 0.5%%). Delivered, bounced and complained are SES feedback as the sender counted it at %3$s (UTC), by UTC day.', 'postbag' ), $rate( $rates['bounce_7d'] ), $rate( $rates['complaint_7d'] ), $rates['generated_at'] )
			)
		);
	}

	/**
	 * @param array[] $jobs Postbag_Console::job_view() of running jobs.
	 */
	private function render_running( array $jobs ): void {
		echo '<h2>' . esc_html__( 'Running notify jobs', 'postbag' ) . '</h2><div id="postbag-running-jobs">';
		if ( ! $jobs ) {
			echo '<p>' . esc_html__( 'None.', 'postbag' ) . '</p>';
		}
		foreach ( $jobs as $job ) {
			$this->render_job_progress( $job );
		}
		echo '</div>';
	}

	/**
	 * @param array $job Postbag_Console::job_view().
	 */
	private function render_job_progress( array $job ): void {
		$id = 'postbag-job-progress-' . (int) $job['id'];
		printf( '<div class="postbag-job" data-job-id="%1$s"><label for="%2$s">%3$s</label> ', esc_attr( $job['job_id'] ), esc_attr( $id ), esc_html( '' === $job['subject'] ? $job['job_id'] : $job['subject'] ) );
		if ( null === $job['progress'] ) {
			printf( '<progress id="%s"></progress> ', esc_attr( $id ) );
		} else {
			printf( '<progress id="%1$s" max="100" value="%2$d">%2$d%%</progress> %2$d%% ', esc_attr( $id ), (int) round( 100 * $job['progress'] ) );
		}
		/* translators: %s: time */
		printf( '<span class="postbag-eta">%s</span></div>', esc_html( null === $job['eta'] ? __( 'ETA unknown', 'postbag' ) : sprintf( __( 'ETA %s (UTC)', 'postbag' ), $job['eta'] ) ) );
	}

	private function render_log(): void {
		// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- a read-only view.
		$entry = isset( $_GET['entry'] ) ? absint( $_GET['entry'] ) : 0;
		if ( $entry > 0 ) {
			$this->render_detail( $entry );
			return;
		}
		$table = new Postbag_Log_Table( $this->console, self::url( 'log' ) );
		$table->prepare_items();
		echo '<h2>' . esc_html__( 'Email log', 'postbag' ) . '</h2>';
		echo '<form method="get" id="postbag-log-search" action="' . esc_url( is_multisite() ? network_admin_url( 'admin.php' ) : admin_url( 'admin.php' ) ) . '">';
		echo '<input type="hidden" name="page" value="' . esc_attr( self::SLUG ) . '"><input type="hidden" name="tab" value="log">';
		$table->search_box( __( 'Search recipients, subjects, ids', 'postbag' ), 'postbag-log' ); // Input id postbag-log-search-input.
		$table->display();
		echo '</form>';
	}

	/**
	 * @param int $id Log id.
	 */
	private function render_detail( int $id ): void {
		$row = $this->console->entry( $id );
		printf( '<p><a href="%s">%s</a></p>', esc_url( self::url( 'log' ) ), esc_html__( '← Back to the email log', 'postbag' ) );
		if ( null === $row ) {
			echo '<p>' . esc_html__( 'No such log entry (it may have been pruned).', 'postbag' ) . '</p>';
			return;
		}
		echo '<h2>' . esc_html( '' === $row['subject'] ? __( '(no subject)', 'postbag' ) : $row['subject'] ) . '</h2><dl id="postbag-log-detail">';
		$fields = array(
			'status'     => array( __( 'Status', 'postbag' ), self::status_label( $row['status'] ) ),
			'reason'     => array( __( 'Reason', 'postbag' ), $row['reason'] ),
			'recipients' => array( __( 'To', 'postbag' ), $row['recipients'] ),
			'subject'    => array( __( 'Subject', 'postbag' ), $row['subject'] ),
			'kind'       => array( __( 'Kind', 'postbag' ), 'job' === $row['kind'] ? __( 'Notify job', 'postbag' ) : __( 'Mail', 'postbag' ) ),
			'mail-id'    => array( __( 'Mail id', 'postbag' ), $row['mail_id'] ),
			'batch'      => array( __( 'Batch', 'postbag' ), $row['batch_id'] ),
			'message-id' => array( __( 'SES message id', 'postbag' ), $row['message_id'] ),
			'receipt'    => array( __( 'Receipt', 'postbag' ), $row['receipt_key'] ),
			'counts'     => array( __( 'Counts', 'postbag' ), null === $row['counts'] ? '' : (string) wp_json_encode( $row['counts'] ) ),
			'created'    => array( __( 'Queued (UTC)', 'postbag' ), $row['created_at'] ),
			'updated'    => array( __( 'Updated (UTC)', 'postbag' ), $row['updated_at'] ),
		);
		foreach ( $fields as $name => list( $label, $value ) ) {
			printf( '<dt>%1$s</dt><dd id="postbag-detail-%2$s">%3$s</dd>', esc_html( $label ), esc_attr( $name ), esc_html( '' === (string) $value ? '—' : (string) $value ) );
		}
		echo '</dl>';
		if ( 'failed' === $row['status'] || ( 'job' === $row['kind'] && (int) ( $row['counts']['failed'] ?? 0 ) > 0 ) ) {
			self::action_form( 'resend', __( 'Send again (once the cause is fixed)', 'postbag' ), array( 'entry' => $id ), 'postbag-resend' );
		}
	}

	private function render_jobs(): void {
		$jobs = $this->console->jobs( 1, 50 );
		echo '<h2>' . esc_html__( 'Notify jobs', 'postbag' ) . '</h2>';
		echo '<table class="widefat striped" id="postbag-jobs-table"><thead><tr><th scope="col">' . esc_html__( 'Subject', 'postbag' ) . '</th><th scope="col">' . esc_html__( 'Status', 'postbag' ) . '</th><th scope="col">' . esc_html__( 'Progress', 'postbag' ) . '</th><th scope="col">' . esc_html__( 'Actions', 'postbag' ) . '</th></tr></thead><tbody>';
		if ( ! $jobs['rows'] ) {
			echo '<tr><td colspan="4">' . esc_html__( 'No notify jobs logged.', 'postbag' ) . '</td></tr>';
		}
		foreach ( $jobs['rows'] as $job ) {
			printf( '<tr class="postbag-job-row" data-job-id="%1$s"><td><a href="%2$s">%3$s</a></td><td>%4$s</td><td>', esc_attr( $job['job_id'] ), esc_url( self::url( 'log', array( 'entry' => $job['id'] ) ) ), esc_html( '' === $job['subject'] ? $job['job_id'] : $job['subject'] ), esc_html( self::status_label( $job['status'] ) ) );
			$this->render_job_progress( $job );
			echo '</td><td>';
			if ( in_array( $job['status'], array( 'queued', 'spooled', 'uploaded', 'scheduled' ), true ) ) {
				/* translators: %s: job subject or id */
				self::action_form( 'cancel', __( 'Cancel', 'postbag' ), array( 'job_id' => $job['job_id'] ), '', 'postbag-cancel-job', sprintf( __( 'Cancel the job %s', 'postbag' ), '' === $job['subject'] ? $job['job_id'] : $job['subject'] ) );
			}
			echo '</td></tr>';
		}
		echo '</tbody></table>';
	}

	private function render_scheduled(): void {
		$this->scheduled->render();
	}

	private function render_suppressions(): void {
		echo '<h2>' . esc_html__( 'Suppressions', 'postbag' ) . '</h2><div id="postbag-suppressions">';
		echo '<p>' . esc_html__( 'Addresses Postbag never sends to (unsubscribed, bounced, complained, or added here).', 'postbag' ) . '</p>';
		echo '<form id="postbag-suppression-add"><label for="postbag-suppression-address">' . esc_html__( 'Address', 'postbag' ) . '</label> <input type="email" id="postbag-suppression-address" required> ';
		echo '<label for="postbag-suppression-scope">' . esc_html__( 'Scope', 'postbag' ) . '</label> <input type="text" id="postbag-suppression-scope" value="all" aria-describedby="postbag-suppression-scope-help"> ';
		echo '<span id="postbag-suppression-scope-help" class="description">' . esc_html__( '"all", or "list:<name>"', 'postbag' ) . '</span> ';
		echo '<button type="submit" class="button">' . esc_html__( 'Suppress', 'postbag' ) . '</button></form>';
		echo '<p id="postbag-suppression-status" aria-live="polite" role="status"></p>';
		echo '<table class="widefat striped" id="postbag-suppression-list"><thead><tr><th scope="col">' . esc_html__( 'Address', 'postbag' ) . '</th><th scope="col">' . esc_html__( 'Scope', 'postbag' ) . '</th><th scope="col">' . esc_html__( 'Reason', 'postbag' ) . '</th><th scope="col">' . esc_html__( 'Since', 'postbag' ) . '</th><th scope="col">' . esc_html__( 'Actions', 'postbag' ) . '</th></tr></thead><tbody><tr><td colspan="5">' . esc_html__( 'Loading…', 'postbag' ) . '</td></tr></tbody></table></div>';
	}

	private function render_actions(): void {
		// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- which row to watch.
		$test = isset( $_GET['test'] ) ? absint( $_GET['test'] ) : 0;
		$row  = $test > 0 ? $this->console->entry( $test ) : null;
		echo '<h2>' . esc_html__( 'Send a test mail', 'postbag' ) . '</h2>';
		echo '<form method="post" id="postbag-test-form" action="' . esc_url( admin_url( 'admin-post.php' ) ) . '">';
		self::hidden_fields( 'test' );
		echo '<label for="postbag-test-to">' . esc_html__( 'To', 'postbag' ) . '</label> <input type="email" name="to" id="postbag-test-to" value="' . esc_attr( (string) get_option( 'admin_email' ) ) . '" required> ';
		echo '<button type="submit" class="button button-primary" id="postbag-send-test">' . esc_html__( 'Send test mail', 'postbag' ) . '</button></form>';
		printf(
			'<p id="postbag-test-status" aria-live="polite" role="status" data-id="%1$d" data-status="%2$s">%3$s</p>',
			null === $row ? 0 : (int) $row['id'],
			esc_attr( null === $row ? '' : $row['status'] ),
			/* translators: %s: status */
			esc_html( null === $row ? '' : sprintf( __( 'Test mail: %s', 'postbag' ), self::status_label( $row['status'] ) . ( '' === $row['reason'] ? '' : ' — ' . $row['reason'] ) ) )
		);
		echo '<h2>' . esc_html__( 'Spool and sync', 'postbag' ) . '</h2>';
		self::action_form( 'retry', __( 'Retry the spool now', 'postbag' ), array(), 'postbag-retry-spool' );
		self::action_form( 'sync', __( 'Read outcomes from the sender now', 'postbag' ), array(), 'postbag-sync' );
	}

	/**
	 * The fields every action form posts: admin-post.php's action, what to do, its nonce.
	 *
	 * @param string $do What to do.
	 */
	public static function hidden_fields( string $do ): void {
		echo '<input type="hidden" name="action" value="' . esc_attr( self::ACTION ) . '"><input type="hidden" name="postbag_do" value="' . esc_attr( $do ) . '">';
		wp_nonce_field( self::ACTION . '_' . $do );
	}

	/**
	 * A one-button form posting to admin-post.php.
	 *
	 * @param string $do     What to do.
	 * @param string $label  Button text.
	 * @param array  $fields Hidden fields.
	 * @param string $id     The button's id, or ''.
	 * @param string $class  An extra class for the button.
	 * @param string $aria   Its accessible name when the text alone is ambiguous.
	 */
	private static function action_form( string $do, string $label, array $fields, string $id, string $class = '', string $aria = '' ): void {
		echo '<form method="post" class="postbag-action" action="' . esc_url( admin_url( 'admin-post.php' ) ) . '">';
		self::hidden_fields( $do );
		foreach ( $fields as $name => $value ) {
			printf( '<input type="hidden" name="%1$s" value="%2$s">', esc_attr( $name ), esc_attr( (string) $value ) );
		}
		printf(
			'<button type="submit" class="button %1$s"%2$s%3$s>%4$s</button></form>',
			esc_attr( $class ),
			'' === $id ? '' : ' id="' . esc_attr( $id ) . '"',
			'' === $aria ? '' : ' aria-label="' . esc_attr( $aria ) . '"',
			esc_html( $label )
		);
	}

	/** admin-post.php: capability, nonce, input, then the service; back to the screen. */
	public function action_request(): void {
		$redirect = $this->handle_action();
		wp_safe_redirect( $redirect );
		exit;
	}

	/**
	 * @return string Where to go next.
	 */
	public function handle_action(): string {
		if ( ! current_user_can( Postbag_Rest::capability() ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to manage Postbag.', 'postbag' ), 403 );
		}
		$do = isset( $_POST['postbag_do'] ) ? sanitize_key( wp_unslash( $_POST['postbag_do'] ) ) : ''; // phpcs:ignore WordPress.Security.NonceVerification.Missing -- the nonce's name depends on it; checked next.
		check_admin_referer( self::ACTION . '_' . $do );
		switch ( $do ) {
			case 'test':
				$to  = isset( $_POST['to'] ) ? sanitize_email( wp_unslash( $_POST['to'] ) ) : '';
				$row = $this->console->send_test( '' === $to ? 'invalid' : $to );
				if ( is_wp_error( $row ) ) {
					return self::notify( 'error', $row->get_error_message(), self::url( 'actions' ) );
				}
				return self::notify( 'success', __( 'Test mail queued: it is uploaded after this page, and its status shows below.', 'postbag' ), self::url( 'actions', array( 'test' => $row['id'] ) ) );
			case 'retry':
				$summary = $this->console->retry_spool();
				/* translators: 1: batches uploaded, 2: batches still failing */
				return self::notify( 'success', sprintf( __( 'Spool retried: %1$d batch(es) uploaded, %2$d still failing.', 'postbag' ), $summary['uploaded'], $summary['failed'] ), self::url( 'actions' ) );
			case 'sync':
				$summary = $this->console->sync();
				/* translators: 1: receipts read, 2: mails updated, 3: jobs updated */
				$text = sprintf( __( 'Read %1$d receipt(s): %2$d mail(s) and %3$d job(s) updated.', 'postbag' ), $summary['receipts'], $summary['mails'], $summary['jobs'] );
				return self::notify( $summary['errors'] ? 'error' : 'success', $text . ( $summary['errors'] ? ' ' . implode( ' ', $summary['errors'] ) : '' ), self::url( 'actions' ) );
			case 'resend':
				$entry  = isset( $_POST['entry'] ) ? absint( $_POST['entry'] ) : 0;
				$result = $this->console->resend( $entry );
				return self::notify( is_wp_error( $result ) ? 'error' : 'success', is_wp_error( $result ) ? $result->get_error_message() : __( 'Asked the sender to send it again.', 'postbag' ), self::url( 'log', array( 'entry' => $entry ) ) );
			case 'cancel':
				$job_id = isset( $_POST['job_id'] ) ? sanitize_text_field( wp_unslash( $_POST['job_id'] ) ) : '';
				$result = $this->console->cancel_job( $job_id );
				return self::notify( is_wp_error( $result ) ? 'error' : 'success', is_wp_error( $result ) ? $result->get_error_message() : __( 'Cancel requested.', 'postbag' ), self::url( 'jobs' ) );
			case 'sched_cancel':
			case 'reschedule':
				list( $type, $text ) = $this->scheduled->handle( $do );
				return self::notify( $type, $text, self::url( 'scheduled' ) );
		}
		return self::notify( 'error', __( 'Unknown action.', 'postbag' ), self::url() );
	}

	/**
	 * Keeps a one-time message for the current user's next view of the screen.
	 *
	 * @param string $type 'success' or 'error'.
	 * @param string $text Message.
	 * @param string $url  Where to go.
	 */
	private static function notify( string $type, string $text, string $url ): string {
		set_transient( 'postbag_notice_' . get_current_user_id(), compact( 'type', 'text' ), 5 * MINUTE_IN_SECONDS );
		return $url;
	}
}
