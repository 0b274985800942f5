<?php
/**
 * The one-click unsubscribe endpoint through nginx and PHP-FPM.
 *
 * @package Postbag\Tests
 */

/**
 * A real request as a mail provider sends it (RFC 8058: a POST of
 * `List-Unsubscribe=One-Click`, no cookie, no login) and as a person or a
 * link scanner opens the link (a GET), through nginx, PHP-FPM, WordPress's
 * REST API and moto's S3: the answers are HTML pages with the right status,
 * never a redirect; the POST unsubscribes and its inbox document reaches the
 * bucket after the response; the GET unsubscribes nobody.
 */
final class Postbag_UnsubscribeLiveTest extends Postbag_Test_Live_Case {

	/** @var Postbag_Test_Php_Fpm|null */
	private $fpm;

	/** @var Postbag_Test_Nginx|null */
	private $nginx;

	protected function setUp(): void {
		parent::setUp();
		$this->require_nginx_and_php_fpm();
		Postbag_Suppressions::install();
		$GLOBALS['wpdb']->query( 'TRUNCATE TABLE ' . Postbag_Suppressions::table() );
		$sandbox   = Postbag_Test_WordPress::$sandbox;
		$this->fpm = new Postbag_Test_Php_Fpm( $sandbox, array( 'php_admin_value[memory_limit] = 128M' ) );
		try {
			$this->nginx = new Postbag_Test_Nginx(
				$sandbox,
				$this->fpm,
				__DIR__ . '/requests',
				array(
					'POSTBAG_TEST_WP_CONFIG' => $sandbox->path( 'wp-config.php' ),
					'POSTBAG_TEST_REPORTS'   => $sandbox->path( 'reports-unsubscribe', true ),
					'POSTBAG_TEST_CONSTANTS' => json_encode( Postbag_Test_Local_Aws::site_constants( self::$aws->endpoint, $this->bucket, $this->spool_dir ), JSON_UNESCAPED_SLASHES ),
				)
			);
		} catch ( Throwable $e ) {
			$this->fpm->stop();
			throw $e;
		}
	}

	protected function tearDown(): void {
		if ( null !== $this->nginx ) {
			$this->nginx->stop();
		}
		if ( null !== $this->fpm ) {
			$this->fpm->stop();
		}
		foreach ( $GLOBALS['wpdb']->get_col( "SELECT option_name FROM {$GLOBALS['wpdb']->options} WHERE option_name LIKE '\\_transient\\_postbag\\_unsub\\_%'" ) as $name ) {
			delete_transient( substr( $name, strlen( '_transient_' ) ) );
		}
		parent::tearDown();
	}

	/**
	 * The link's query, signed by this process with the key the site uses
	 * (the test site is http, so no URL is made: the values are what counts).
	 *
	 * @param string $address Address.
	 */
	private static function link( string $address ): array {
		$expires = time() + 3600;
		$tokens  = Postbag_Unsubscribe_Token::from_constants( 'time' );
		return array(
			'rest_route' => '/' . Postbag_Unsubscribe_Token::ROUTE,
			'list'       => 'new-posts',
			'address'    => $address,
			'expires'    => $expires,
			'signature'  => $tokens->sign( 'new-posts', $address, $expires ),
		);
	}

	/**
	 * One request with curl, no cookie jar, no redirect followed.
	 *
	 * @param string      $method GET or POST.
	 * @param array       $query  Query values.
	 * @param string|null $body   Form-encoded body.
	 * @return array{status: int, type: string, location: bool, cookie: bool, body: string, error: string}
	 */
	private function request( string $method, array $query, ?string $body = null ): array {
		$headers = array();
		$curl    = curl_init( $this->nginx->url . Postbag_Test_Nginx::PAGES_PATH . 'nginx-rest.php?' . http_build_query( $query ) );
		curl_setopt_array(
			$curl,
			array(
				CURLOPT_CUSTOMREQUEST  => $method,
				CURLOPT_RETURNTRANSFER => true,
				CURLOPT_FOLLOWLOCATION => false,
				CURLOPT_HTTPHEADER     => array( 'Host: blog.example.org', 'Content-Type: application/x-www-form-urlencoded' ),
				CURLOPT_TIMEOUT        => 30,
				CURLOPT_PROXY          => '',
				CURLOPT_NOPROXY        => '*',
				CURLOPT_HEADERFUNCTION => static function ( $curl, string $line ) use ( &$headers ): int {
					$parts = explode( ':', $line, 2 );
					if ( 2 === count( $parts ) ) {
						$headers[ strtolower( trim( $parts[0] ) ) ] = trim( $parts[1] );
					}
					return strlen( $line );
				},
			) + ( null === $body ? array() : array( CURLOPT_POSTFIELDS => $body ) )
		);
		$response = curl_exec( $curl );
		$status   = (int) curl_getinfo( $curl, CURLINFO_RESPONSE_CODE );
		$error    = curl_error( $curl );
		curl_close( $curl );
		return array(
			'status'   => $status,
			'type'     => $headers['content-type'] ?? '',
			'location' => isset( $headers['location'] ),
			'cookie'   => isset( $headers['set-cookie'] ),
			'body'     => is_string( $response ) ? $response : '',
			'error'    => $error,
		);
	}

	/** What the site's suppression table holds for an address, by scope. */
	private static function scopes( string $address ): array {
		return array_column( ( new Postbag_Suppressions() )->entries( Postbag_Suppressions::hash( $address ) ), 'scope' );
	}

	private function logs(): string {
		return (string) @file_get_contents( $this->fpm->log ) . (string) @file_get_contents( dirname( $this->fpm->log ) . '/php-errors.log' ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- a log may not exist yet.
	}

	public function test_a_one_click_post_unsubscribes_answers_200_and_reaches_the_bucket(): void {
		$link     = self::link( 'zoe@example.net' );
		$response = $this->request( 'POST', $link, 'List-Unsubscribe=One-Click' );

		$this->assertSame( 200, $response['status'], $response['error'] . $response['body'] . $this->logs() );
		$this->assertFalse( $response['location'], 'never a redirect' );
		$this->assertFalse( $response['cookie'], 'no cookie set' );
		$this->assertSame( 'text/html; charset=UTF-8', $response['type'], 'an HTML page, not the REST API\'s JSON' );
		$this->assertStringStartsWith( '<!DOCTYPE html>', $response['body'] );
		$this->assertStringContainsString( '<h1>Unsubscribed</h1>', $response['body'] );
		$this->assertSame( array( Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ) ), self::scopes( 'zoe@example.net' ), 'this site\'s list' );

		// Uploaded after the response by the same worker: the sender's side has it within a minute.
		$answered = microtime( true );
		$deadline = $answered + 60;
		do {
			$docs = $this->objects( Postbag_Suppression_Inbox::PREFIX );
		} while ( ! $docs && microtime( true ) < $deadline && usleep( 50000 ) === null );
		$this->assertCount( 1, $docs, $this->logs() );
		if ( getenv( 'POSTBAG_TEST_REPORT_TIMES' ) ) {
			fwrite( STDERR, sprintf( "unsubscribe POST answered to inbox document in the bucket: %.2f s\n", microtime( true ) - $answered ) );
		}
		$doc = json_decode( reset( $docs )['body'], true );
		$this->assertSame( array( 'add', Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ), 'zoe@example.net', 'unsubscribe', 'site' ), array( $doc['action'], $doc['scope'], $doc['address'], $doc['reason'], $doc['source'] ) );

		$again = $this->request( 'POST', $link, 'List-Unsubscribe=One-Click' );
		$this->assertSame( 200, $again['status'], 'unsubscribing twice is fine' );
	}

	public function test_a_get_shows_the_confirmation_page_and_unsubscribes_nobody(): void {
		$response = $this->request( 'GET', self::link( 'ann@example.net' ) );

		$this->assertSame( 200, $response['status'], $response['error'] . $response['body'] . $this->logs() );
		$this->assertSame( 'text/html; charset=UTF-8', $response['type'] );
		$this->assertFalse( $response['location'] );
		$this->assertMatchesRegularExpression( '/<form method="post" action="[^"]+"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe<\/button><\/form>/', $response['body'] );
		$this->assertSame( array(), self::scopes( 'ann@example.net' ) );
		$this->assertSame( array(), $this->objects( Postbag_Suppression_Inbox::PREFIX ) );
	}

	public function test_a_forged_link_gets_403_and_a_page(): void {
		$link              = self::link( 'ann@example.net' );
		$link['address']   = 'bob@example.net';
		$response          = $this->request( 'POST', $link, 'List-Unsubscribe=One-Click' );
		$this->assertSame( 403, $response['status'], $response['body'] . $this->logs() );
		$this->assertSame( 'text/html; charset=UTF-8', $response['type'] );
		$this->assertStringContainsString( 'not valid', $response['body'] );
		$this->assertSame( array(), self::scopes( 'bob@example.net' ) );
	}
}
