<?php
/**
 * The public one-click unsubscribe endpoint.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * `postbag/v1/unsubscribe`, public: the signed link is the authorisation, so
 * neither login, cookie nor nonce is needed (RFC 8058: the mail provider
 * POSTs without any).
 *
 * - POST with `List-Unsubscribe=One-Click` (form-encoded, as providers send
 *   it, or from the confirmation page's button) unsubscribes at once and
 *   answers 200 with a short page; never a redirect.
 * - GET answers a small confirmation page whose button POSTs: link scanners
 *   and prefetchers, which GET every link of a mail, unsubscribe nobody.
 * - A missing or malformed link answers 400, a forged or expired one 403,
 *   each with a page that says why.
 * - The signature is checked first (an HMAC: no query). A request whose link
 *   verifies is never limited: it is idempotent, and a limit would let
 *   anyone who knows an address use up its budget with junk links, or let
 *   link scanners and a provider's shared egress IPs, or one proxy in front
 *   of the site, block real one-click POSTs (providers do not retry them).
 *   Only refused requests (missing, forged, expired) count, per client IP
 *   (a fixed window in a transient; 429 with Retry-After once used up), so
 *   signatures cannot be guessed at speed.
 * - A valid POST repeated within WINDOW for an entry already in the local
 *   list answers 200 without spooling a second inbox document.
 *
 * The answers are HTML, not the REST API's JSON: the callback returns the
 * page as the response's data and `rest_pre_serve_request` prints it as is.
 */
final class Postbag_Unsubscribe_Endpoint {

	/** Refused requests per window and client IP (filter `postbag_unsubscribe_rate_limits`). */
	const LIMITS = array( 'ip' => 30 );

	/** Seconds of a rate-limit window. */
	const WINDOW = 600;

	/** @var Postbag_Unsubscribe_Token */
	private $tokens;

	/** @var Postbag_Suppression_Inbox */
	private $inbox;

	/** @var Postbag_Suppressions The local list (is a repeated POST's change still there?). */
	private $table;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Unsubscribe_Token $tokens Verifies links.
	 * @param Postbag_Suppression_Inbox $inbox  Records unsubscribes.
	 * @param Postbag_Suppressions      $table  The local list.
	 * @param callable(): int           $clock  Current Unix time.
	 */
	public function __construct( Postbag_Unsubscribe_Token $tokens, Postbag_Suppression_Inbox $inbox, Postbag_Suppressions $table, callable $clock ) {
		$this->tokens = $tokens;
		$this->inbox  = $inbox;
		$this->table  = $table;
		$this->clock  = $clock;
	}

	public function init(): void {
		add_action( 'rest_api_init', array( $this, 'register' ) );
		add_filter( 'rest_pre_serve_request', array( $this, 'serve_html' ), 10, 4 );
	}

	public function remove(): void {
		remove_action( 'rest_api_init', array( $this, 'register' ) );
		remove_filter( 'rest_pre_serve_request', array( $this, 'serve_html' ), 10 );
	}

	public function register(): void {
		register_rest_route(
			'postbag/v1',
			'/unsubscribe',
			array(
				'methods'             => array( 'GET', 'POST' ),
				'callback'            => array( $this, 'handle' ),
				'permission_callback' => '__return_true', // The signed link is the authorisation.
			)
		);
	}

	/**
	 * @param WP_REST_Request $request The request.
	 */
	public function handle( WP_REST_Request $request ): WP_REST_Response {
		$query   = $request->get_query_params();
		$list    = $query['list'] ?? null;
		$address = $query['address'] ?? null;
		$problem = $this->tokens->problem( $list, $address, $query['expires'] ?? null, $query['signature'] ?? null );
		$wait    = null === $problem ? null : $this->refused_too_often();
		if ( null !== $wait ) {
			$response = $this->page( 429, __( 'Too many requests', 'postbag' ), __( 'Please try again in a few minutes.', 'postbag' ) );
			$response->header( 'Retry-After', (string) $wait );
			return $response;
		}
		if ( 'missing' === $problem ) {
			return $this->page( 400, __( 'Incomplete link', 'postbag' ), __( 'This unsubscribe link is incomplete. Copy the whole link from the mail, or use the link of a newer mail.', 'postbag' ) );
		}
		if ( null !== $problem ) {
			$text = 'expired' === $problem
				? __( 'This unsubscribe link has expired. Use the link of a newer mail from this site.', 'postbag' )
				: __( 'This unsubscribe link is not valid. Copy the whole link from the mail, or use the link of a newer mail.', 'postbag' );
			return $this->page( 403, __( 'Link not valid', 'postbag' ), $text );
		}
		if ( 'GET' === $request->get_method() ) {
			return $this->confirmation( $query );
		}
		$body = $request->get_body_params();
		if ( 'One-Click' !== ( $body['List-Unsubscribe'] ?? null ) ) {
			return $this->page( 400, __( 'Not an unsubscribe request', 'postbag' ), __( 'Use the button of the unsubscribe page.', 'postbag' ) );
		}
		return $this->unsubscribe( $list, $address );
	}

	/**
	 * `rest_pre_serve_request`: prints this route's page as HTML; every other
	 * route is left to the REST server.
	 *
	 * @param bool             $served  Whether the request was served already.
	 * @param WP_HTTP_Response $result  The response.
	 * @param WP_REST_Request  $request The request.
	 * @return bool
	 */
	public function serve_html( $served, $result, $request ) {
		if ( $served || ! $request instanceof WP_REST_Request || '/' . Postbag_Unsubscribe_Token::ROUTE !== $request->get_route() || ! is_string( $result->get_data() ) ) {
			return $served;
		}
		echo $result->get_data(); // phpcs:ignore WordPress.Security.EscapeOutput.OutputNotEscaped -- page() escaped every value.
		return true;
	}

	/**
	 * @param string $list    List name (verified).
	 * @param string $address Address (verified).
	 */
	private function unsubscribe( string $list, string $address ): WP_REST_Response {
		$scope = Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( $list ) );
		$done  = 'postbag_unsub_done_' . substr( hash( 'sha256', Postbag_Suppressions::hash( $address ) . ' ' . $scope ), 0, 32 );
		try {
			// A repeat (a provider's retry, a second click) of a change still in the local list: nothing new to send.
			if ( false === get_transient( $done ) || ! wp_list_filter( $this->table->entries( Postbag_Suppressions::hash( $address ) ), array( 'scope' => $scope ) ) ) {
				$this->inbox->change( 'add', $scope, $address, 'unsubscribe' );
				set_transient( $done, 1, self::WINDOW );
			}
		} catch ( Postbag_Spool_Exception $e ) {
			// Recorded here but not on its way to the sender: the provider (or the person) tries again.
			$response = $this->page( 503, __( 'Please try again', 'postbag' ), __( 'Your request could not be recorded just now. Please try again in a minute.', 'postbag' ) );
			$response->header( 'Retry-After', '60' );
			return $response;
		}

		/**
		 * Fires when someone unsubscribed through a one-click link.
		 *
		 * @param string $address Normalised address.
		 * @param string $list    List name as on the wire (`<site prefix>-<name>`, Postbag_List_Unsubscribe::site_list()).
		 */
		do_action( 'postbag_unsubscribed', Postbag_Suppressions::normalise( $address ), $list );
		/* translators: %s: list name */
		return $this->page( 200, __( 'Unsubscribed', 'postbag' ), sprintf( __( 'You will no longer receive mail from the list "%s" of this site.', 'postbag' ), Postbag_List_Unsubscribe::local_name( $list ) ) );
	}

	/**
	 * The GET page: what the button does, and the button, which posts back to the same link.
	 *
	 * @param array<string, string> $query The link's values (verified).
	 */
	private function confirmation( array $query ): WP_REST_Response {
		/* translators: 1: address, 2: list name */
		$text = sprintf( __( 'Stop sending mail of the list "%2$s" to %1$s?', 'postbag' ), $query['address'], Postbag_List_Unsubscribe::local_name( $query['list'] ) );
		$link = array();
		foreach ( array( 'list', 'address', 'expires', 'signature' ) as $name ) {
			$link[ $name ] = rawurlencode( $query[ $name ] );
		}
		$form = '<form method="post" action="' . esc_url( add_query_arg( $link, rest_url( Postbag_Unsubscribe_Token::ROUTE ) ) ) . '">'
			. '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
			. '<button type="submit">' . esc_html__( 'Unsubscribe', 'postbag' ) . '</button></form>';
		return $this->page( 200, __( 'Unsubscribe', 'postbag' ), $text, $form );
	}

	/**
	 * A small, complete HTML page; every value escaped here.
	 *
	 * @param int    $status HTTP status.
	 * @param string $title  Heading, plain text.
	 * @param string $text   Paragraph, plain text.
	 * @param string $form   Trusted markup after it (the confirmation's form), or ''.
	 */
	private function page( int $status, string $title, string $text, string $form = '' ): WP_REST_Response {
		$site = get_bloginfo( 'name' );
		$html = '<!DOCTYPE html><html lang="' . esc_attr( get_bloginfo( 'language' ) ) . '"><head><meta charset="utf-8">'
			. '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
			. '<title>' . esc_html( $title . ( '' === $site ? '' : ' – ' . $site ) ) . '</title>'
			. '<style>body{font:1.1em/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}button{font:inherit;padding:.5em 1.5em}</style>'
			. '</head><body><main><h1>' . esc_html( $title ) . '</h1><p>' . esc_html( $text ) . '</p>' . $form . '</main></body></html>';
		$response = new WP_REST_Response( $html, $status );
		$response->header( 'Content-Type', 'text/html; charset=UTF-8' );
		// The URL carries the token: no cache, no referrer, no indexing, nothing loaded from elsewhere.
		$response->header( 'Cache-Control', 'no-store' );
		$response->header( 'Referrer-Policy', 'no-referrer' );
		$response->header( 'X-Robots-Tag', 'noindex' );
		$response->header( 'Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'" );
		return $response;
	}

	/**
	 * For a refused request: seconds to wait when the client's IP used up
	 * its window of refusals, else null (and this refusal is counted).
	 */
	private function refused_too_often(): ?int {
		/**
		 * Filters the refused requests (missing, forged or expired links) allowed per
		 * ten-minute window and client IP. Requests whose link verifies are never limited.
		 *
		 * @param array{ip: int} $limits Per client IP.
		 */
		$limits = apply_filters( 'postbag_unsubscribe_rate_limits', self::LIMITS );
		$key    = 'postbag_unsub_ip_' . md5( self::client_ip() );
		$now    = ( $this->clock )();
		$window = get_transient( $key );
		if ( ! is_array( $window ) || (int) $window[0] + self::WINDOW <= $now || (int) $window[0] > $now ) {
			$window = array( $now, 0 );
		}
		if ( $window[1] >= (int) ( $limits['ip'] ?? self::LIMITS['ip'] ) ) {
			return max( 1, (int) $window[0] + self::WINDOW - $now );
		}
		++$window[1];
		set_transient( $key, $window, self::WINDOW );
		return null;
	}

	/** The client's address as the web server saw it (a proxy's headers can be forged). */
	private static function client_ip(): string {
		return isset( $_SERVER['REMOTE_ADDR'] ) ? sanitize_text_field( wp_unslash( $_SERVER['REMOTE_ADDR'] ) ) : '';
	}
}
