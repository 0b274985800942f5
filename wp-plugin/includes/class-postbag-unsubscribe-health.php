<?php
/**
 * Site Health test of one-click unsubscribe.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Says whether the site's mail can carry one-click unsubscribe links, and
 * how safely: the site must be served over https (otherwise list mail and
 * notify jobs go without List-Unsubscribe, which Gmail and Yahoo require of
 * bulk senders), the link key should be POSTBAG_UNSUBSCRIBE_SECRET (a key
 * derived from the salts breaks every link already mailed when they are
 * rotated), and unsubscribes should not wait long for S3.
 */
final class Postbag_Unsubscribe_Health {

	/** Seconds an unsubscribe may wait in the spool before the test warns. */
	const WAITING_WARNING = HOUR_IN_SECONDS;

	/** @var Postbag_List_Unsubscribe */
	private $lists;

	/** @var Postbag_Suppression_Inbox */
	private $inbox;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_List_Unsubscribe  $lists Links.
	 * @param Postbag_Suppression_Inbox $inbox Changes waiting for S3.
	 * @param callable(): int           $clock Current Unix time.
	 */
	public function __construct( Postbag_List_Unsubscribe $lists, Postbag_Suppression_Inbox $inbox, callable $clock ) {
		$this->lists = $lists;
		$this->inbox = $inbox;
		$this->clock = $clock;
	}

	public function init(): void {
		add_filter( 'site_status_tests', array( $this, 'add_test' ) );
	}

	public function remove(): void {
		remove_filter( 'site_status_tests', array( $this, 'add_test' ) );
	}

	/**
	 * @param array $tests Site Health tests.
	 * @return array
	 */
	public function add_test( $tests ) {
		$tests['direct']['postbag_unsubscribe'] = array(
			'label' => __( 'Postbag one-click unsubscribe', 'postbag' ),
			'test'  => array( $this, 'result' ),
		);
		return $tests;
	}

	/** The test's result: the worst problem found, all of them listed. */
	public function result(): array {
		$problems = $this->problems();
		$status   = 'good';
		foreach ( $problems as $problem ) {
			$status = 'critical' === $problem[0] ? 'critical' : ( 'critical' === $status ? $status : 'recommended' );
		}
		$text = $problems ? implode( '', array_map( static function ( array $problem ): string {
			return '<p>' . esc_html( $problem[1] ) . '</p>';
		}, $problems ) ) : '<p>' . esc_html__( 'Every notification carries a signed one-click unsubscribe link (RFC 8058), keyed by POSTBAG_UNSUBSCRIBE_SECRET from wp-config.php.', 'postbag' ) . '</p>';
		return array(
			'label'       => $problems ? __( 'Postbag\'s unsubscribe links need attention', 'postbag' ) : __( 'Postbag\'s mail carries one-click unsubscribe links', 'postbag' ),
			'status'      => $status,
			'badge'       => array(
				'label' => __( 'Postbag', 'postbag' ),
				'color' => 'critical' === $status ? 'red' : 'blue',
			),
			'description' => $text,
			'test'        => 'postbag_unsubscribe',
		);
	}

	/**
	 * @return array<int, array{0: string, 1: string}> Severity and text of each problem.
	 */
	public function problems(): array {
		$problems = array();
		if ( ! $this->lists->can_link() ) {
			$problems[] = array( 'critical', __( 'The site is not served over https (or its address is not plain ASCII), so Postbag cannot put an unsubscribe link in List-Unsubscribe: list mail and notify jobs go without one, and Gmail and Yahoo expect it of bulk mail. Serve the site over https, at an ASCII (punycode) address.', 'postbag' ) );
		}
		if ( Postbag_Unsubscribe_Token::SOURCE_SALT === $this->lists->tokens()->source() ) {
			$problems[] = array( 'recommended', __( 'POSTBAG_UNSUBSCRIBE_SECRET is not defined in wp-config.php: unsubscribe links are signed with a key derived from the WordPress salts, and rotating the salts breaks every link already mailed. Define it (a long random string) and keep it.', 'postbag' ) );
		}
		$oldest = null;
		foreach ( $this->inbox->waiting() as $entry ) {
			$at     = strtotime( (string) ( $entry['doc']['at'] ?? '' ) );
			$oldest = false === $at ? $oldest : min( $oldest ?? $at, $at );
		}
		if ( null !== $oldest && ( $this->clock )() - $oldest > self::WAITING_WARNING ) {
			/* translators: %d: changes waiting */
			$problems[] = array( 'critical', sprintf( __( '%d unsubscribe or suppression changes have waited more than an hour for S3: the sender does not know them yet. See the Postbag bucket test.', 'postbag' ), count( $this->inbox->waiting() ) ) );
		}
		return $problems;
	}
}
