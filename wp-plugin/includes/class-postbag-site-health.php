<?php
/**
 * Site Health tests: a private, writable spool that empties; a bucket that
 * answers; mail that is not failing; a From the sender allows; no misspelt constant.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Two direct Site Health tests. The spool: every batch goes through it, so
 * it must be writable, and it must hold nothing a web server would show (an
 * unconverted file of an earlier version). The sender: with
 * POSTBAG_ALLOWED_SENDERS defined, WordPress's default From (wordpress@<host>
 * unless a wp_mail_from filter changes it) must be allowed, or every
 * non-priority mail without a From of its own is refused (POSTBAG_FROM, when
 * set, must be an address). Mail stuck in the spool (its oldest batch older
 * than POSTBAG_STUCK_AFTER_MINUTES), failed or quarantined mail in the last
 * day (the email log), a bucket that does not answer a signed request, and
 * a `POSTBAG_*` constant Postbag does not read (a typo) are reported too.
 * Each test is good only when it checked and found nothing wrong.
 */
final class Postbag_Site_Health {

	/** How far back failed and quarantined mail makes the delivery test critical. */
	const RECENT_SECONDS = DAY_IN_SECONDS;

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Allowed_Senders */
	private $senders;

	/** @var Postbag_Interceptor */
	private $interceptor;

	/** @var array{probe: ?Postbag_Bucket_Probe, counts: ?callable, unreceipted: ?callable, from: ?Postbag_From, stuck_minutes: int, clock: callable} */
	private $checks;

	/**
	 * @param Postbag_Spool           $spool       The spool.
	 * @param Postbag_Allowed_Senders $senders     POSTBAG_ALLOWED_SENDERS.
	 * @param Postbag_Interceptor     $interceptor Knows the default From.
	 * @param array                   $checks      What the other tests read: `probe` (Postbag_Bucket_Probe, null
	 *                                             without a bucket), `counts` (callable( int $since ): array<status, int>,
	 *                                             Postbag_Mail_Log::counts(); null: no delivery test), `unreceipted`
	 *                                             (callable( int $before ): int, Postbag_Mail_Log::unreceipted()), `from` (Postbag_From),
	 *                                             `stuck_minutes` (default 15), `clock` (default time()).
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Allowed_Senders $senders, Postbag_Interceptor $interceptor, array $checks = array() ) {
		$this->spool       = $spool;
		$this->senders     = $senders;
		$this->interceptor = $interceptor;
		$this->checks      = array_merge(
			array(
				'probe'         => null,
				'counts'        => null,
				'unreceipted'   => null,
				'from'          => null,
				'stuck_minutes' => 15,
				'clock'         => 'time',
			),
			$checks
		);
	}

	public function init(): void {
		add_filter( 'site_status_tests', array( $this, 'add_tests' ) );
	}

	public function remove(): void {
		remove_filter( 'site_status_tests', array( $this, 'add_tests' ) );
	}

	/**
	 * @param array $tests Site Health tests.
	 * @return array
	 */
	public function add_tests( $tests ) {
		$tests['direct']['postbag_spool']  = array(
			'label' => __( 'Postbag keeps queued mail safe on disk', 'postbag' ),
			'test'  => array( $this, 'spool_result' ),
		);
		$tests['direct']['postbag_sender'] = array(
			'label' => __( 'Postbag\'s sender accepts the default From', 'postbag' ),
			'test'  => array( $this, 'sender_result' ),
		);
		$tests['direct']['postbag_stuck']  = array(
			'label' => __( 'Postbag\'s spool empties', 'postbag' ),
			'test'  => array( $this, 'stuck_result' ),
		);
		// A direct test: its answer is kept a minute (Postbag_Bucket_Probe), so the page rarely waits for it.
		$tests['direct']['postbag_bucket']    = array(
			'label' => __( 'Postbag\'s bucket answers', 'postbag' ),
			'test'  => array( $this, 'bucket_result' ),
		);
		$tests['direct']['postbag_constants'] = array(
			'label' => __( 'Postbag\'s constants are all known', 'postbag' ),
			'test'  => array( $this, 'constants_result' ),
		);
		if ( null !== $this->checks['counts'] ) {
			$tests['direct']['postbag_delivery'] = array(
				'label' => __( 'Postbag\'s mail is delivered', 'postbag' ),
				'test'  => array( $this, 'delivery_result' ),
			);
		}
		return $tests;
	}

	/** Mail waiting in the spool longer than POSTBAG_STUCK_AFTER_MINUTES: its uploads keep failing. */
	public function stuck_result(): array {
		$stuck = $this->stuck_batches();
		if ( $stuck ) {
			$oldest = reset( $stuck );
			$text   = sprintf(
				/* translators: 1: number of mails, 2: number of batches, 3: minutes, 4: error message */
				__( '%1$d mail(s) in %2$d batch(es) have waited in the spool for more than %3$d minutes: their upload to S3 keeps failing. Last error: %4$s', 'postbag' ),
				array_sum( array_column( $stuck, 'mails' ) ),
				count( $stuck ),
				$this->checks['stuck_minutes'],
				'' === (string) ( $oldest['last_error'] ?? '' ) ? __( 'none recorded (no upload tried yet: is WP-Cron running?)', 'postbag' ) : (string) $oldest['last_error']
			);
			return self::result( 'postbag_stuck', 'critical', __( 'Mail is stuck in Postbag\'s spool', 'postbag' ), $text . ' ' . __( 'Fix the cause, then use "Retry now" in the admin notice or on the Postbag screen.', 'postbag' ) );
		}
		$unreceipted = $this->unreceipted_mails();
		if ( $unreceipted > 0 ) {
			/* translators: 1: number of mails, 2: minutes */
			$text = sprintf( __( '%1$d mail(s) reached the bucket more than %2$d minutes ago and the sender has written no receipt for them: it is not deployed, not wired to the bucket (postbag wire), or failing. See docs/deploy.md and the sender\'s alarms.', 'postbag' ), $unreceipted, $this->checks['stuck_minutes'] );
			return self::result( 'postbag_stuck', 'critical', __( 'Mail is stuck in Postbag\'s bucket', 'postbag' ), $text );
		}
		/* translators: %d: minutes */
		return self::result( 'postbag_stuck', 'good', __( 'Postbag\'s spool empties', 'postbag' ), sprintf( __( 'No mail has waited in the spool, or in the bucket for its receipt, for more than %d minutes.', 'postbag' ), $this->checks['stuck_minutes'] ) );
	}

	/** Mails uploaded more than POSTBAG_STUCK_AFTER_MINUTES ago without a receipt (for alerts too). */
	public function unreceipted_mails(): int {
		if ( null === $this->checks['unreceipted'] ) {
			return 0;
		}
		return (int) ( $this->checks['unreceipted'] )( (int) ( $this->checks['clock'] )() - 60 * $this->checks['stuck_minutes'] );
	}

	/**
	 * Spooled batches older than the limit, oldest first (for alerts too).
	 *
	 * @return array<string, array> Batch id => state.
	 */
	public function stuck_batches(): array {
		$before = (int) ( $this->checks['clock'] )() - 60 * $this->checks['stuck_minutes'];
		return array_filter(
			$this->spool->states(),
			static function ( array $state ) use ( $before ): bool {
				return (int) ( $state['first_spooled_at'] ?? 0 ) < $before;
			}
		);
	}

	/** The bucket answers a signed request with the uploads' credentials. */
	public function bucket_result(): array {
		if ( null === $this->checks['probe'] ) {
			return self::result( 'postbag_bucket', 'critical', __( 'Postbag has no bucket', 'postbag' ), __( 'POSTBAG_BUCKET is not defined in wp-config.php: non-priority mail waits in the spool until it is.', 'postbag' ) );
		}
		$answer = $this->checks['probe']->check();
		if ( ! $answer['reachable'] ) {
			return self::result(
				'postbag_bucket',
				'critical',
				__( 'Postbag cannot reach its bucket', 'postbag' ),
				/* translators: %s: error message */
				sprintf( __( 'A signed request to the bucket failed: %s. Non-priority mail waits in the spool (notify jobs too) until the bucket answers. Check POSTBAG_BUCKET, POSTBAG_REGION, POSTBAG_ENDPOINT, the credentials and any proxy.', 'postbag' ), $answer['error'] )
			);
		}
		/* translators: %s: HTTP status */
		return self::result( 'postbag_bucket', 'good', __( 'Postbag\'s bucket answers', 'postbag' ), sprintf( __( 'A signed request to the bucket was answered (HTTP %s) with the credentials uploads use.', 'postbag' ), (string) $answer['status'] ) );
	}

	/** Failed or quarantined mail in the email log, over the last day. */
	public function delivery_result(): array {
		$counts = ( $this->checks['counts'] )( (int) ( $this->checks['clock'] )() - self::RECENT_SECONDS );
		$failed = (int) ( $counts['failed'] ?? 0 );
		$held   = (int) ( $counts['quarantined'] ?? 0 );
		if ( $failed || $held ) {
			$text = sprintf(
				/* translators: 1: number of failed mails, 2: number of quarantined mails */
				__( 'In the last 24 hours %1$d mail(s) failed and %2$d were quarantined (the sender could not read their batch). The email log on the Postbag screen says why for each; resend or re-drive once the cause is fixed.', 'postbag' ),
				$failed,
				$held
			);
			return self::result( 'postbag_delivery', 'critical', __( 'Postbag\'s mail is failing', 'postbag' ), $text );
		}
		return self::result( 'postbag_delivery', 'good', __( 'Postbag\'s mail is delivered', 'postbag' ), __( 'No mail failed or was quarantined in the last 24 hours.', 'postbag' ) );
	}

	/** `POSTBAG_*` constants Postbag does not read: most likely a typo, silently ignored otherwise. */
	public function constants_result(): array {
		$unknown = Postbag_Config::unknown_constants();
		if ( ! $unknown ) {
			return self::result( 'postbag_constants', 'good', __( 'Postbag\'s constants are all known', 'postbag' ), __( 'Every POSTBAG_* constant in wp-config.php is one Postbag reads.', 'postbag' ) );
		}
		$names = array();
		foreach ( $unknown as $name ) {
			$closest = Postbag_Config::closest_constant( $name );
			/* translators: 1: unknown constant, 2: known constant */
			$names[] = '' === $closest ? $name : sprintf( __( '%1$s (did you mean %2$s?)', 'postbag' ), $name, $closest );
		}
		/* translators: %s: constant names */
		return self::result( 'postbag_constants', 'recommended', __( 'wp-config.php defines a constant Postbag does not know', 'postbag' ), sprintf( __( 'Postbag ignores %s. Correct the name in wp-config.php.', 'postbag' ), implode( ', ', $names ) ) );
	}

	/** The spool test: writable, nothing unprotected in it. */
	public function spool_result(): array {
		$problems = $this->spool->problems();
		if ( $problems ) {
			return self::result(
				'postbag_spool',
				'critical',
				__( 'Postbag\'s spool has a problem', 'postbag' ),
				implode( ' ', $problems ) . ' ' . __( 'Until it is fixed, a batch whose upload fails is sent through wp_mail() at once, and a worker that dies after the response loses its mail. Set POSTBAG_SPOOL_DIR to a directory PHP can write, outside the web root if you can.', 'postbag' )
			);
		}
		return self::result(
			'postbag_spool',
			'good',
			__( 'Postbag keeps queued mail safe on disk', 'postbag' ),
			/* translators: %s: directory */
			sprintf( __( 'Queued mail is written to %s before each response ends, so nothing is lost if PHP stops before the upload. Its files are PHP files that exit when requested: no web server shows their contents, in uploads/ on nginx included.', 'postbag' ), $this->spool->dir() )
		);
	}

	/** The sender test: the default From is in POSTBAG_ALLOWED_SENDERS. */
	public function sender_result(): array {
		$problem = null === $this->checks['from'] ? '' : $this->checks['from']->problem();
		if ( '' !== $problem ) {
			return self::result( 'postbag_sender', 'critical', __( 'POSTBAG_FROM is not an email address', 'postbag' ), $problem );
		}
		if ( ! $this->senders->is_restricted() ) {
			return self::result(
				'postbag_sender',
				'recommended',
				__( 'Postbag does not know which From addresses the sender allows', 'postbag' ),
				__( 'Define POSTBAG_ALLOWED_SENDERS in wp-config.php with the value the Lambda has: Postbag then refuses at wp_mail() time a mail from a sender it would refuse, instead of letting it fail later.', 'postbag' )
			);
		}
		$from = $this->interceptor->effective_default_from();
		if ( ! $this->senders->allows( $from ) ) {
			return self::result(
				'postbag_sender',
				'critical',
				/* translators: %s: email address */
				sprintf( __( 'Non-priority mail from %s is refused', 'postbag' ), $from ),
				$this->senders->refusal( $from ) . ' ' . __( 'This is the From of every mail that does not set one.', 'postbag' )
			);
		}
		return self::result(
			'postbag_sender',
			'good',
			__( 'Postbag\'s sender accepts the default From', 'postbag' ),
			/* translators: 1: email address, 2: comma-separated addresses or domains */
			sprintf( __( 'The default From %1$s is in POSTBAG_ALLOWED_SENDERS (%2$s).', 'postbag' ), $from, $this->senders->describe() )
		);
	}

	/**
	 * @param string $test        Test name.
	 * @param string $status      good, recommended or critical.
	 * @param string $label       Unescaped label.
	 * @param string $description Unescaped description.
	 */
	private static function result( string $test, string $status, string $label, string $description ): array {
		return array(
			'label'       => $label,
			'status'      => $status,
			'badge'       => array(
				'label' => __( 'Postbag', 'postbag' ),
				'color' => 'good' === $status ? 'blue' : ( 'critical' === $status ? 'red' : 'orange' ),
			),
			'description' => '<p>' . esc_html( $description ) . '</p>',
			'actions'     => '',
			'test'        => $test,
		);
	}
}
