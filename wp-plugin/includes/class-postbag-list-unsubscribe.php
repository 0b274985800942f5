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

	/** The option holding this site's list prefix (one per blog on a network). */
	const SITE_OPTION = 'postbag_list_site';

	/**
	 * A list's name as the suppression list, the links and the sender know
	 * it: this site's prefix, `-`, the caller's name (`3f9a0c1e-weekly`).
	 * The suppression table is one per network and the sender's store one
	 * per stage, and both key list entries by name: without the prefix an
	 * unsubscribe from one blog's (or one site's) `notifications` would stop
	 * every other blog and site sharing the stage. The result stays within
	 * meta.list's pattern (callers' names are at most 55 characters,
	 * Postbag_Notify_Args::LIST_PATTERN). A name that has the prefix already
	 * is returned as it is.
	 *
	 * @param string $list A list name as a caller gave it.
	 */
	public static function site_list( string $list ): string {
		$prefix = self::site_prefix() . '-';
		return 0 === strpos( $list, $prefix ) ? $list : $prefix . $list;
	}

	/**
	 * The caller's name of one of this site's lists, for people to read.
	 *
	 * @param string $list A name from site_list() (another one is returned as it is).
	 */
	public static function local_name( string $list ): string {
		$prefix = self::site_prefix() . '-';
		return 0 === strpos( $list, $prefix ) ? substr( $list, strlen( $prefix ) ) : $list;
	}

	/**
	 * Eight hex digits of SHA-256 of the site's address (no scheme), worked
	 * out at first use and then kept in SITE_OPTION: a later domain move keeps
	 * it (and the unsubscribes recorded under it), and a reinstall at the same
	 * address derives the same one again. Read per call, not cached: a
	 * network request may switch_to_blog().
	 */
	private static function site_prefix(): string {
		$prefix = get_option( self::SITE_OPTION );
		if ( is_string( $prefix ) && preg_match( '/^[0-9a-f]{8}$/', $prefix ) ) {
			return $prefix;
		}
		$site   = strtolower( untrailingslashit( (string) preg_replace( '#^[a-z][a-z0-9+.-]*://#i', '', home_url() ) ) );
		$prefix = substr( hash( 'sha256', $site ), 0, 8 );
		update_option( self::SITE_OPTION, $prefix, true ); // Concurrent first uses write the same value.
		return $prefix;
	}

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
	 * Links for many recipients of one list (Postbag_Unsubscribe_Token::linker()).
	 *
	 * @param string $list List name.
	 * @return callable(string): ?string
	 */
	public function linker( string $list ): callable {
		return $this->tokens->linker( $list );
	}

	/**
	 * RFC 8058's headers for one recipient. Where the site can make links
	 * but not this one (longer than Postbag_Unsubscribe_Token::MAX_URL: a
	 * long address on a long site path), the mail goes without a list, and
	 * the PHP error log says so: the sender would refuse the link, and with
	 * it the mail.
	 *
	 * @param string $list    List name.
	 * @param string $address Bare address.
	 * @return array<string, string> The two headers; empty when no link can be made.
	 */
	public function headers( string $list, string $address ): array {
		$headers = $this->tokens->headers( $list, $address, $this->mailto );
		if ( ! $headers && $this->can_link() ) {
			// phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log -- the site owner's only trace of it; no address in it.
			error_log( sprintf( 'Postbag: a mail of the list "%s" goes without a list and without one-click unsubscribe: its link would be longer than %d characters (a long address on a long site path).', self::local_name( $list ), Postbag_Unsubscribe_Token::MAX_URL ) );
		}
		return $headers;
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
	 * @param string $list List name (this site's: see site_list()).
	 * @return string[] `all` and the list's scope.
	 */
	private static function scopes( string $list ): array {
		return array( Postbag_Suppressions::ALL, Postbag_Suppressions::scope( self::site_list( $list ) ) );
	}
}
