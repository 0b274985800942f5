<?php
/**
 * The From addresses the sender may use.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * POSTBAG_ALLOWED_SENDERS, read as the Lambda reads its setting of the same
 * name (chalicelib.fields.sender_allowed): comma-separated addresses
 * (news@example.org) or whole domains (example.org, not its subdomains),
 * compared without case. Empty: nothing is checked here (the Lambda still
 * refuses a From it does not allow).
 */
final class Postbag_Allowed_Senders {

	/** @var string[] Lower-case addresses and domains. */
	private $allowed;

	/**
	 * @param string $setting Comma-separated addresses or domains.
	 */
	public function __construct( string $setting ) {
		$this->allowed = array_values( array_filter( array_map( 'trim', explode( ',', strtolower( $setting ) ) ), 'strlen' ) );
	}

	/** Whether a list was given at all. */
	public function is_restricted(): bool {
		return (bool) $this->allowed;
	}

	/**
	 * @param string $email A From address.
	 */
	public function allows( string $email ): bool {
		if ( ! $this->allowed ) {
			return true;
		}
		$email = strtolower( trim( $email ) );
		$at    = strrpos( $email, '@' );
		return in_array( $email, $this->allowed, true ) || ( false !== $at && in_array( substr( $email, $at + 1 ), $this->allowed, true ) );
	}

	/** The list, for messages. */
	public function describe(): string {
		return implode( ', ', $this->allowed );
	}

	/**
	 * Why a From cannot be used, for wp_mail_failed and Site Health.
	 *
	 * @param string $email The From address.
	 */
	public function refusal( string $email ): string {
		/* translators: 1: email address, 2: comma-separated addresses or domains */
		return sprintf( __( 'The From address %1$s is not in POSTBAG_ALLOWED_SENDERS (%2$s): the sender would refuse the mail. Give an allowed From (a From header or the wp_mail_from filter), or allow this address.', 'postbag' ), $email, $this->describe() );
	}
}
