<?php
/**
 * Signed one-click unsubscribe links.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * A per-recipient token: HMAC-SHA256 over the site's URL (without its
 * scheme, so a move to https keeps old links working), the list, the
 * normalised address and an expiry, base64url without padding. Verifying it
 * needs the key only (no database lookup, so an unsubscribe works while the
 * table is being migrated, and a flood of forged links costs no query), and
 * one made for an address or list is worthless for any other.
 *
 * The key is POSTBAG_UNSUBSCRIBE_SECRET from wp-config.php. Without it, a key
 * derived from WordPress's auth salt (wp_salt( 'auth' )) is used, and Site
 * Health says so: rotating the salts (a routine response to a breach) would
 * then break every unsubscribe link already mailed, which a constant of its
 * own avoids.
 *
 * Links live LIFETIME (a year): people unsubscribe from mail they kept, and
 * RFC 8058 asks nothing shorter; an expired link answers with a page that
 * says to use the link of a newer mail.
 */
final class Postbag_Unsubscribe_Token {

	/** Seconds a link stays valid after it was made. */
	const LIFETIME = YEAR_IN_SECONDS;

	/** The REST route of the endpoint (Postbag_Unsubscribe_Endpoint). */
	const ROUTE = 'postbag/v1/unsubscribe';

	/** Where the key came from (Site Health). */
	const SOURCE_CONSTANT = 'constant';
	const SOURCE_SALT     = 'salt';

	/** RFC 8058's value, exactly. */
	const ONE_CLICK = 'List-Unsubscribe=One-Click';

	/**
	 * The longest link the sender takes (chalicelib/unsubscribe.py MAX_URL,
	 * the schemas' maxLength): a List-Unsubscribe header of it still folds
	 * within RFC 5322's 998-character line.
	 */
	const MAX_URL = 975;

	/** What the sender accepts in a link (chalicelib/unsubscribe.py `_URL`): printable ASCII, none of `"`, `,`, `<`, `>`, space. */
	const URL_PATTERN = '/^https:\/\/[!#-+\-.-;=?-~]+$/';

	/** @var string|null Null until first use when derived from the salt (wp_salt() is pluggable: not loaded yet when plugins are). */
	private $key;

	/** @var string */
	private $source;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param string|null     $key    HMAC key; null: derived from the auth salt on first use.
	 * @param string          $source SOURCE_CONSTANT or SOURCE_SALT.
	 * @param callable(): int $clock  Current Unix time.
	 */
	public function __construct( ?string $key, string $source, callable $clock ) {
		$this->key    = $key;
		$this->source = $source;
		$this->clock  = $clock;
	}

	/**
	 * The key from POSTBAG_UNSUBSCRIBE_SECRET, or derived from the auth salt.
	 *
	 * @param callable(): int $clock Current Unix time.
	 */
	public static function from_constants( callable $clock ): self {
		if ( defined( 'POSTBAG_UNSUBSCRIBE_SECRET' ) && '' !== (string) constant( 'POSTBAG_UNSUBSCRIBE_SECRET' ) ) {
			return new self( (string) constant( 'POSTBAG_UNSUBSCRIBE_SECRET' ), self::SOURCE_CONSTANT, $clock );
		}
		return new self( null, self::SOURCE_SALT, $clock );
	}

	private function key(): string {
		if ( null === $this->key ) {
			// Derived, so the salt itself never becomes a MAC key used elsewhere.
			$this->key = hash_hmac( 'sha256', 'postbag-unsubscribe', wp_salt( 'auth' ) );
		}
		return $this->key;
	}

	/** SOURCE_CONSTANT or SOURCE_SALT. */
	public function source(): string {
		return $this->source;
	}

	/**
	 * @param string $list    List name.
	 * @param string $address Bare address.
	 * @param int    $expires Unix time.
	 */
	public function sign( string $list, string $address, int $expires ): string {
		return $this->mac( self::site(), $list, $address, $expires );
	}

	/** The site without its scheme: moving a site from http to https keeps its links valid. */
	private static function site(): string {
		return untrailingslashit( (string) preg_replace( '#^[a-z][a-z0-9+.-]*://#i', '', home_url() ) );
	}

	/**
	 * @param string $site    site().
	 * @param string $list    List name.
	 * @param string $address Bare address.
	 * @param int    $expires Unix time.
	 */
	private function mac( string $site, string $list, string $address, int $expires ): string {
		$message = implode( "\n", array( $site, $list, Postbag_Suppressions::normalise( $address ), (string) $expires ) );
		return rtrim( strtr( base64_encode( hash_hmac( 'sha256', $message, $this->key(), true ) ), '+/', '-_' ), '=' );
	}

	/**
	 * Why a link's values do not unsubscribe anyone, or null when they do.
	 *
	 * @param mixed $list      `list` query value.
	 * @param mixed $address   `address` query value.
	 * @param mixed $expires   `expires` query value.
	 * @param mixed $signature `signature` query value.
	 * @return string|null `missing` (a value is absent or malformed), `forged` (the signature is not
	 *                     this site's for these values) or `expired`.
	 */
	public function problem( $list, $address, $expires, $signature ): ?string {
		foreach ( array( $list, $address, $expires, $signature ) as $value ) {
			if ( ! is_string( $value ) || '' === $value ) {
				return 'missing';
			}
		}
		if ( ! preg_match( '/^[0-9]{1,12}$/', $expires ) ) {
			return 'missing';
		}
		if ( ! hash_equals( $this->sign( $list, $address, (int) $expires ), $signature ) ) {
			return 'forged';
		}
		return (int) $expires < ( $this->clock )() ? 'expired' : null;
	}

	/**
	 * The endpoint's URL that links start from, or null when the site is not
	 * served over https (mail providers ignore or distrust a plain http
	 * List-Unsubscribe; Site Health says so) or its address is not plain
	 * ASCII (an IRI the sender would refuse). rest_url() runs filters and
	 * reads options: a job asks once per stream, not once per recipient.
	 */
	public function base(): ?string {
		$base = rest_url( self::ROUTE );
		return preg_match( self::URL_PATTERN, $base ) ? $base : null;
	}

	/**
	 * The one-click URL for one recipient of one list, or null when none can
	 * be made: no base() (see there), or the link would be longer than
	 * MAX_URL (a long site path and a long address, which rawurlencode()
	 * makes up to three times longer when it is not ASCII) or not what the
	 * sender accepts. The sender would refuse it, losing the mail.
	 *
	 * @param string $list    List name.
	 * @param string $address Bare address.
	 */
	public function url( string $list, string $address ): ?string {
		return ( $this->linker( $list ) )( $address );
	}

	/**
	 * url() for many recipients of one list: the endpoint's URL and the site
	 * are read once (rest_url() and home_url() run filters and read options),
	 * so a job's stream pays for them once, not per recipient. Made per
	 * stream: a network request may switch_to_blog() in between.
	 *
	 * @param string $list List name.
	 * @return callable(string): ?string Bare address => its link, or null (see url()).
	 */
	public function linker( string $list ): callable {
		$base = $this->base();
		$site = self::site();
		return function ( string $address ) use ( $list, $base, $site ): ?string {
			if ( null === $base ) {
				return null;
			}
			$expires = ( $this->clock )() + self::LIFETIME;
			$url     = $base . ( false === strpos( $base, '?' ) ? '?' : '&' ) . http_build_query(
				array(
					'list'      => $list,
					'address'   => Postbag_Suppressions::normalise( $address ),
					'expires'   => $expires,
					'signature' => $this->mac( $site, $list, $address, $expires ),
				),
				'',
				'&',
				PHP_QUERY_RFC3986
			);
			return strlen( $url ) <= self::MAX_URL && preg_match( self::URL_PATTERN, $url ) ? $url : null;
		};
	}

	/**
	 * RFC 8058's two headers for one recipient, or an empty array when no
	 * https URL can be made.
	 *
	 * @param string $list    List name.
	 * @param string $address Bare address.
	 * @param string $mailto  An address that takes unsubscribe requests (POSTBAG_UNSUBSCRIBE_MAILTO), or ''.
	 * @return array<string, string> Header name => value.
	 */
	public function headers( string $list, string $address, string $mailto ): array {
		$url = $this->url( $list, $address );
		if ( null === $url ) {
			return array();
		}
		$value = '<' . $url . '>' . ( '' === $mailto ? '' : ', <mailto:' . $mailto . '?subject=unsubscribe>' );
		return array(
			'List-Unsubscribe'      => $value,
			'List-Unsubscribe-Post' => self::ONE_CLICK,
		);
	}

	/** Whether links can be made at all (the site's REST URL is https and plain ASCII). */
	public function can_link(): bool {
		return null !== $this->base();
	}
}
