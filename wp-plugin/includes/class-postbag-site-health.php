<?php
/**
 * Site Health tests: a private, writable spool; a From the sender allows.
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
 * non-priority mail without a From of its own is refused.
 */
final class Postbag_Site_Health {

	/** @var Postbag_Spool */
	private $spool;

	/** @var Postbag_Allowed_Senders */
	private $senders;

	/** @var Postbag_Interceptor */
	private $interceptor;

	/**
	 * @param Postbag_Spool           $spool       The spool.
	 * @param Postbag_Allowed_Senders $senders     POSTBAG_ALLOWED_SENDERS.
	 * @param Postbag_Interceptor     $interceptor Knows the default From.
	 */
	public function __construct( Postbag_Spool $spool, Postbag_Allowed_Senders $senders, Postbag_Interceptor $interceptor ) {
		$this->spool       = $spool;
		$this->senders     = $senders;
		$this->interceptor = $interceptor;
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
		return $tests;
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
