<?php
/**
 * What a mail that belongs to a list carries, and who it must not reach.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The one place that joins the signed links (Postbag_Unsubscribe_Token), the
 * local suppression list (Postbag_Suppressions) and the unsubscribe mailto
 * (POSTBAG_UNSUBSCRIBE_MAILTO), for the interceptor (a wp_mail() that names
 * a list) and notify jobs (every row of a job with a list).
 */
final class Postbag_List_Unsubscribe {

	/** The list of a notify job whose caller named none: every notification can be stopped. */
	const DEFAULT_LIST = 'notifications';

	/** @var Postbag_Unsubscribe_Token */
	private $tokens;

	/** @var Postbag_Suppressions */
	private $table;

	/** @var string */
	private $mailto;

	/**
	 * @param Postbag_Unsubscribe_Token $tokens Signs links.
	 * @param Postbag_Suppressions      $table  The local list.
	 * @param string                    $mailto An address that takes unsubscribe mails, or ''.
	 */
	public function __construct( Postbag_Unsubscribe_Token $tokens, Postbag_Suppressions $table, string $mailto ) {
		$this->tokens = $tokens;
		$this->table  = $table;
		$this->mailto = is_email( $mailto ) ? $mailto : '';
	}

	/** Whether https links can be made (else mail goes without List-Unsubscribe; Site Health says so). */
	public function can_link(): bool {
		return $this->tokens->can_link();
	}

	/** The unsubscribe mailto, or ''. */
	public function mailto(): string {
		return $this->mailto;
	}

	public function tokens(): Postbag_Unsubscribe_Token {
		return $this->tokens;
	}

	/**
	 * @param string $list    List name.
	 * @param string $address Bare address.
	 * @return string|null Null on a site without https.
	 */
	public function url( string $list, string $address ): ?string {
		return $this->tokens->url( $list, $address );
	}

	/**
	 * @param string $list    List name.
	 * @param string $address Bare address.
	 * @return array<string, string> RFC 8058's two headers; empty on a site without https.
	 */
	public function headers( string $list, string $address ): array {
		return $this->tokens->headers( $list, $address, $this->mailto );
	}

	/**
	 * Which addresses must not get mail of this list: suppressed for every
	 * list or for this one. One query for the lot (per chunk of
	 * Postbag_Suppressions::LOOKUP_CHUNK), never one per address.
	 *
	 * @param string   $list      List name.
	 * @param string[] $addresses Bare addresses.
	 * @return array<string, true> Hash of each suppressed address => true.
	 * @throws RuntimeException When the list cannot be read.
	 */
	public function suppressed( string $list, array $addresses ): array {
		return $this->table->suppressed( array_map( array( 'Postbag_Suppressions', 'hash' ), $addresses ), self::scopes( $list ) );
	}

	/**
	 * A check for many pages of one list, as a job's stream makes them: the
	 * whole list loaded once on first use when it is small enough
	 * (Postbag_Suppressions::SET_MAX), else suppressed() per page. Made per
	 * stream, so a later one sees changes made meanwhile.
	 *
	 * @param string $list List name.
	 * @return callable(string[]): array<string, true> Address hashes => each suppressed one => true.
	 */
	public function checker( string $list ): callable {
		$set = false; // Not loaded yet; null: too large to load.
		return function ( array $hashes ) use ( $list, &$set ): array {
			if ( false === $set ) {
				$set = $this->table->suppressed_set( self::scopes( $list ) );
			}
			if ( null === $set ) {
				return $this->table->suppressed( $hashes, self::scopes( $list ) );
			}
			$found = array();
			if ( $set ) {
				foreach ( $hashes as $hash ) {
					if ( isset( $set[ hex2bin( $hash ) ] ) ) {
						$found[ $hash ] = true;
					}
				}
			}
			return $found;
		};
	}

	/**
	 * @param string $list List name.
	 * @return string[] `all` and the list's scope.
	 */
	private static function scopes( string $list ): array {
		return array( Postbag_Suppressions::ALL, Postbag_Suppressions::scope( $list ) );
	}
}
