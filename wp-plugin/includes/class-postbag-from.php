<?php
/**
 * The From a mail gets when it names none: POSTBAG_FROM.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * POSTBAG_FROM (`news@example.org` or `Blog News <news@example.org>`)
 * replaces WordPress's default From (wordpress@<host>, which a sender
 * seldom allows) for every mail, urgent or not, that does not set its own:
 * a From header and other plugins' wp_mail_from filters still win, since
 * this filter runs first (priority 5) and only replaces core's default.
 */
final class Postbag_From {

	/** Before other plugins' wp_mail_from filters (10), which may then still change it. */
	const PRIORITY = 5;

	/** @var string */
	private $setting;

	/** @var Postbag_Interceptor */
	private $interceptor;

	/**
	 * @param string              $setting     POSTBAG_FROM, '' for none.
	 * @param Postbag_Interceptor $interceptor Knows core's default From.
	 */
	public function __construct( string $setting, Postbag_Interceptor $interceptor ) {
		$this->setting     = $setting;
		$this->interceptor = $interceptor;
	}

	public function init(): void {
		add_filter( 'wp_mail_from', array( $this, 'from_email' ), self::PRIORITY );
		add_filter( 'wp_mail_from_name', array( $this, 'from_name' ), self::PRIORITY );
	}

	public function remove(): void {
		remove_filter( 'wp_mail_from', array( $this, 'from_email' ), self::PRIORITY );
		remove_filter( 'wp_mail_from_name', array( $this, 'from_name' ), self::PRIORITY );
	}

	/**
	 * Why POSTBAG_FROM cannot be used ('' when it can, or is not set): then it is ignored.
	 */
	public function problem(): string {
		if ( '' === $this->setting || is_email( $this->address() ) ) {
			return '';
		}
		/* translators: %s: the constant's value */
		return sprintf( __( 'POSTBAG_FROM (%s) is not an email address; WordPress\'s default From is used instead.', 'postbag' ), $this->setting );
	}

	/**
	 * @param string $email The From so far.
	 * @return string
	 */
	public function from_email( $email ) {
		return $this->applies() && $email === $this->interceptor->default_from() ? $this->address() : $email;
	}

	/**
	 * @param string $name The From name so far.
	 * @return string
	 */
	public function from_name( $name ) {
		$own = Postbag_Header_Parser::split_mailbox( $this->setting )[0];
		return $this->applies() && '' !== $own && 'WordPress' === $name ? $own : $name;
	}

	private function applies(): bool {
		return '' !== $this->setting && '' === $this->problem();
	}

	private function address(): string {
		return Postbag_Header_Parser::split_mailbox( $this->setting )[1];
	}
}
