<?php
/**
 * One-click unsubscribe: the signed links, RFC 8058's headers, the public
 * endpoint (in process) and list mail through wp_mail().
 *
 * @package Postbag\Tests
 */

/**
 * Links are checked for what RFC 8058 and the 2024 bulk-sender rules ask
 * (exact header values, one https URI) and for what the HMAC must refuse (another address,
 * another list, an expiry changed or passed); the endpoint through
 * rest_do_request() with no user and no cookie; list mail through wp_mail()
 * down to the batch the sender reads.
 */
final class Postbag_UnsubscribeTest extends Postbag_Unit_Test_Case {

	const ADDRESS = 'Reader@Example.net';

	/** @var string|null The harness's REMOTE_ADDR, put back after each test. */
	private $remote_addr;

	protected function setUp(): void {
		parent::setUp();
		Postbag_Suppressions::install();
		$GLOBALS['wpdb']->query( 'TRUNCATE TABLE ' . Postbag_Suppressions::table() );
		self::serve_https();
		$GLOBALS['wp_rest_server'] = null; // A server of this test's plugin: rest_api_init runs again.
		$this->remote_addr         = $_SERVER['REMOTE_ADDR'] ?? null;
		$_SERVER['REMOTE_ADDR']    = '192.0.2.' . wp_rand( 1, 250 );
		wp_set_current_user( 0 );
	}

	protected function tearDown(): void {
		$GLOBALS['wp_rest_server'] = null;
		// Through the API, so the object cache forgets them too.
		foreach ( $GLOBALS['wpdb']->get_col( "SELECT option_name FROM {$GLOBALS['wpdb']->options} WHERE option_name LIKE '\\_transient\\_postbag\\_unsub\\_%'" ) as $name ) {
			delete_transient( substr( $name, strlen( '_transient_' ) ) );
		}
		// Put back what the harness set (WordPress's own mail reads it: Postbag_SiteMailTest).
		if ( null === $this->remote_addr ) {
			unset( $_SERVER['REMOTE_ADDR'] );
		} else {
			$_SERVER['REMOTE_ADDR'] = $this->remote_addr;
		}
		parent::tearDown();
	}

	/** The site as it is served in production: over https (the hooks are put back by the base class). */
	private static function serve_https(): void {
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return set_url_scheme( $url, 'https' );
			}
		);
	}

	private function tokens(): Postbag_Unsubscribe_Token {
		return $this->plugin->lists()->tokens();
	}

	/**
	 * The link's query values.
	 *
	 * @param string $url An unsubscribe URL.
	 * @return array<string, string>
	 */
	private static function query( string $url ): array {
		parse_str( (string) wp_parse_url( $url, PHP_URL_QUERY ), $query );
		return $query;
	}

	/**
	 * @param string $method  GET or POST.
	 * @param array  $query   Query values.
	 * @param array  $body    Form values.
	 */
	private static function call( string $method, array $query, array $body = array() ): WP_REST_Response {
		$request = new WP_REST_Request( $method, '/' . Postbag_Unsubscribe_Token::ROUTE );
		$request->set_query_params( $query );
		if ( $body ) {
			$request->set_header( 'Content-Type', 'application/x-www-form-urlencoded' );
			$request->set_body_params( $body );
		}
		return rest_do_request( $request );
	}

	private function suppressed( string $list ): bool {
		return (bool) $this->plugin->lists()->suppressed( $list, array( self::ADDRESS ) );
	}

	public function test_the_headers_are_exactly_rfc_8058s_with_one_https_uri(): void {
		$headers = $this->tokens()->headers( 'new-posts', self::ADDRESS, '' );

		$this->assertSame( array( 'List-Unsubscribe', 'List-Unsubscribe-Post' ), array_keys( $headers ) );
		$this->assertSame( 'List-Unsubscribe=One-Click', $headers['List-Unsubscribe-Post'] );
		$this->assertMatchesRegularExpression( '/^<https:\/\/[!#-+\-.-;=?-~]+>$/', $headers['List-Unsubscribe'], 'one https URI in angle brackets, nothing that could end it early' );
		$url   = substr( $headers['List-Unsubscribe'], 1, -1 );
		$query = self::query( $url );
		$this->assertSame( 'new-posts', $query['list'] );
		$this->assertSame( 'reader@example.net', $query['address'], 'the normalised address' );
		$this->assertSame( (string) ( $this->now + YEAR_IN_SECONDS ), $query['expires'], 'valid for a year' );
		$this->assertMatchesRegularExpression( '/^[A-Za-z0-9_-]{43}$/', $query['signature'], 'base64url, no padding' );
		$this->assertStringStartsWith( set_url_scheme( home_url( '/' ), 'https' ), $url );
		$this->assertSame( '/' . Postbag_Unsubscribe_Token::ROUTE, $query['rest_route'], 'the endpoint (the test site has plain permalinks)' );
	}

	public function test_a_mailto_follows_the_https_uri(): void {
		$headers = $this->tokens()->headers( 'new-posts', self::ADDRESS, 'unsubscribe@example.org' );
		$this->assertMatchesRegularExpression( '/^<https:\/\/[^<>, ]+>, <mailto:unsubscribe@example\.org\?subject=unsubscribe>$/', $headers['List-Unsubscribe'] );
	}

	public function test_a_site_without_https_gets_no_header_at_all(): void {
		remove_all_filters( 'rest_url' );
		$this->assertStringStartsWith( 'http://', rest_url() );
		$this->assertNull( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		$this->assertSame( array(), $this->tokens()->headers( 'new-posts', self::ADDRESS, 'unsubscribe@example.org' ) );
		$this->assertFalse( $this->plugin->lists()->can_link() );
	}

	/**
	 * Puts the endpoint under a longer path, so that links for self::ADDRESS are exactly `$length` long.
	 *
	 * @param int    $length Characters.
	 * @param string $list   Of this list.
	 */
	private function links_of_length( int $length, string $list = 'new-posts' ): void {
		$pad = $length - strlen( (string) $this->tokens()->url( $list, self::ADDRESS ) );
		add_filter(
			'rest_url',
			static function ( string $url ) use ( $pad ): string {
				return (string) preg_replace( '#^(https://[^/]+/)#', '${1}' . str_repeat( 'p', $pad - 1 ) . '/', $url );
			},
			20
		);
	}

	public function test_a_link_is_at_most_975_characters(): void {
		$this->links_of_length( Postbag_Unsubscribe_Token::MAX_URL );
		$this->assertSame( Postbag_Unsubscribe_Token::MAX_URL, strlen( (string) $this->tokens()->url( 'new-posts', self::ADDRESS ) ) );
		$this->assertNull( $this->tokens()->url( 'new-posts', 'x' . self::ADDRESS ), 'one character more: the sender would refuse it' );
		$this->assertSame( array(), $this->tokens()->headers( 'new-posts', 'x' . self::ADDRESS, '' ) );
		$this->assertTrue( $this->plugin->lists()->can_link(), 'other links can still be made' );
		$schema = json_decode( (string) file_get_contents( dirname( __DIR__, 3 ) . '/fixtures/job-v2.schema.json' ), true );
		$this->assertSame( Postbag_Unsubscribe_Token::MAX_URL, $schema['definitions']['recipient']['properties']['unsubscribe_url']['maxLength'], 'the contract\'s limit' );
	}

	public function test_a_site_address_that_is_not_plain_ascii_gets_no_link(): void {
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return (string) preg_replace( '#^(https://[^/]+/)#', '${1}bücher/', $url );
			},
			20
		);
		$this->assertNull( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		$this->assertFalse( $this->plugin->lists()->can_link() );
		$health = new Postbag_Unsubscribe_Health(
			$this->plugin->lists(),
			$this->plugin->suppression_inbox(),
			static function (): int {
				return 0;
			}
		);
		$this->assertStringContainsString( 'not plain ASCII', $health->problems()[0][1], 'Site Health says why' );
	}

	public function test_a_list_mail_whose_link_would_be_too_long_goes_without_a_list_and_says_so(): void {
		$this->links_of_length( Postbag_Unsubscribe_Token::MAX_URL );
		$log = ini_set( 'error_log', $this->temp_dir . '/php-errors.log' ); // phpcs:ignore WordPress.PHP.IniSet -- where this test reads the plugin's log line.
		try {
			$this->assertTrue( self::list_mail( 'x' . self::ADDRESS ) );
		} finally {
			ini_set( 'error_log', (string) $log ); // phpcs:ignore WordPress.PHP.IniSet
		}
		$meta = $this->flush_batches()[0]['meta'];
		$this->assertArrayNotHasKey( 'list', $meta );
		$this->assertNotContains( 'List-Unsubscribe', array_column( $meta['headers'] ?? array(), 'name' ) );
		$this->assertStringContainsString( 'a mail of the list "weekly" goes without a list and without one-click unsubscribe: its link would be longer than 975 characters', (string) file_get_contents( $this->temp_dir . '/php-errors.log' ) );
	}

	public function test_a_job_row_whose_link_would_be_too_long_is_left_out_visibly(): void {
		$this->links_of_length( Postbag_Unsubscribe_Token::MAX_URL, Postbag_List_Unsubscribe::site_list( 'new-posts' ) );
		$uploaded = self::job_uploads();
		$job_id = self::notify_new_posts( array( self::ADDRESS, 'x' . self::ADDRESS ) );
		$this->plugin->jobs()->stream_pending();
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( 1, $manifest['recipients'] );
		$rows = array_map( 'json_decode', array_filter( explode( "\n", gzdecode( $this->s3->objects[ $manifest['parts'][0]['key'] ]['body'] ) ) ), array( true ) );
		$this->assertSame( Postbag_Unsubscribe_Token::MAX_URL, strlen( $rows[0]['unsubscribe_url'] ) );
		$this->assertSame( array( array( $job_id, 1, 1, 0 ) ), $uploaded->getArrayCopy(), 'job id, rows, dropped (visible in its counts), suppressed' );
	}

	/**
	 * Each change of a valid link: what problem() says.
	 */
	public function bad_links(): array {
		return array(
			'another address'       => array( array( 'address' => 'other@example.net' ), 'forged' ),
			'another list'          => array( array( 'list' => 'weekly' ), 'forged' ),
			'a later expiry'        => array( array( 'expires' => '99999999999' ), 'forged' ),
			'a signature changed'   => array( array( 'signature' => str_repeat( 'A', 43 ) ), 'forged' ),
			'no signature'          => array( array( 'signature' => null ), 'missing' ),
			'no address'            => array( array( 'address' => null ), 'missing' ),
			'an expiry not a time'  => array( array( 'expires' => '1e9' ), 'missing' ),
			'an array for the list' => array( array( 'list' => array( 'new-posts' ) ), 'missing' ),
		);
	}

	/**
	 * @dataProvider bad_links
	 * @param array  $change  Query values replaced (null: removed).
	 * @param string $problem What problem() must answer.
	 */
	public function test_a_token_does_not_verify_for_anything_else( array $change, string $problem ): void {
		$query = array_merge( self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) ), $change );
		$this->assertNull( $this->tokens()->problem( 'new-posts', 'reader@example.net', (string) ( $this->now + YEAR_IN_SECONDS ), self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) )['signature'] ), 'the link itself verifies' );
		$this->assertSame( $problem, $this->tokens()->problem( $query['list'] ?? null, $query['address'] ?? null, $query['expires'] ?? null, $query['signature'] ?? null ) );
	}

	public function test_another_key_makes_other_signatures(): void {
		$other = new Postbag_Unsubscribe_Token(
			'another secret',
			Postbag_Unsubscribe_Token::SOURCE_CONSTANT,
			function (): int {
				return $this->now;
			}
		);
		$query = self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		$this->assertSame( 'forged', $other->problem( $query['list'], $query['address'], $query['expires'], $query['signature'] ) );
		$this->assertSame( Postbag_Unsubscribe_Token::SOURCE_SALT, $this->tokens()->source(), 'the test site defines no POSTBAG_UNSUBSCRIBE_SECRET' );
	}

	public function test_a_link_expires_after_a_year(): void {
		$query      = self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		$this->now += YEAR_IN_SECONDS - 1;
		$this->assertNull( $this->tokens()->problem( $query['list'], $query['address'], $query['expires'], $query['signature'] ) );
		$this->now += 2;
		$this->assertSame( 'expired', $this->tokens()->problem( $query['list'], $query['address'], $query['expires'], $query['signature'] ) );

		$response = self::call( 'POST', $query, array( 'List-Unsubscribe' => 'One-Click' ) );
		$this->assertSame( 403, $response->get_status() );
		$this->assertStringContainsString( 'expired', $response->get_data() );
		$this->assertFalse( $this->suppressed( 'new-posts' ) );
	}

	public function test_a_one_click_post_unsubscribes_at_once_with_200_and_no_redirect(): void {
		$query    = self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		$response = self::call( 'POST', $query, array( 'List-Unsubscribe' => 'One-Click' ) );

		$this->assertSame( 200, $response->get_status() );
		$this->assertArrayNotHasKey( 'Location', $response->get_headers() );
		$this->assertSame( 'text/html; charset=UTF-8', $response->get_headers()['Content-Type'] );
		$this->assertSame( 'no-store', $response->get_headers()['Cache-Control'] );
		$this->assertStringContainsString( '<h1>Unsubscribed</h1>', $response->get_data() );
		$this->assertTrue( $this->suppressed( 'new-posts' ), 'in the local list at once' );
		$this->assertFalse( $this->suppressed( 'weekly' ), 'for that list only' );
		$this->assertSame( 0, get_current_user_id(), 'nobody logged in' );

		$again = self::call( 'POST', $query, array( 'List-Unsubscribe' => 'One-Click' ) );
		$this->assertSame( 200, $again->get_status(), 'unsubscribing twice is fine' );
		$this->assertCount( 1, $GLOBALS['wpdb']->get_col( 'SELECT scope FROM ' . Postbag_Suppressions::table() ) );
	}

	public function test_a_get_shows_a_form_that_posts_and_unsubscribes_nobody(): void {
		$query    = self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		$response = self::call( 'GET', $query );

		$this->assertSame( 200, $response->get_status() );
		$html = $response->get_data();
		$this->assertFalse( $this->suppressed( 'new-posts' ), 'a link scanner GETting the URL unsubscribes nobody' );
		$this->assertSame( array(), $this->plugin->suppression_inbox()->waiting() );
		$document = new DOMDocument();
		$this->assertTrue( $document->loadHTML( $html, LIBXML_NOERROR ) );
		$forms = $document->getElementsByTagName( 'form' );
		$this->assertSame( 1, $forms->length );
		$form = $forms->item( 0 );
		$this->assertSame( 'post', $form->getAttribute( 'method' ) );
		$this->assertSame( $query, self::query( $form->getAttribute( 'action' ) ), 'it posts back to the same link' );
		$input = $form->getElementsByTagName( 'input' )->item( 0 );
		$this->assertSame( array( 'List-Unsubscribe', 'One-Click', 'hidden' ), array( $input->getAttribute( 'name' ), $input->getAttribute( 'value' ), $input->getAttribute( 'type' ) ) );
		$this->assertSame( 1, $form->getElementsByTagName( 'button' )->length );
		$this->assertStringContainsString( 'reader@example.net', $html );
		$this->assertSame( 'en-US', $document->documentElement->getAttribute( 'lang' ) );
	}

	public function test_the_page_escapes_what_the_link_carries(): void {
		$tokens = $this->tokens();
		$list   = 'news';
		$evil   = '"><script>alert(1)</script>@example.net';
		$query  = array(
			'list'      => $list,
			'address'   => $evil,
			'expires'   => (string) ( $this->now + 60 ),
			'signature' => $tokens->sign( $list, $evil, $this->now + 60 ),
		);
		$html   = self::call( 'GET', $query )->get_data();
		$this->assertStringNotContainsString( '<script>', $html );
		$this->assertStringContainsString( '&lt;script&gt;', $html );
	}

	/**
	 * Bad requests: the status and a word of the page.
	 */
	public function bad_requests(): array {
		return array(
			'no values'             => array( 'GET', array(), array(), 400, 'incomplete' ),
			'a forged signature'    => array( 'GET', array( 'signature' => str_repeat( 'x', 43 ) ), array(), 403, 'not valid' ),
			'a post without a body' => array( 'POST', array(), array(), 400, 'button' ),
			'a post of another kind' => array( 'POST', array(), array( 'List-Unsubscribe' => 'yes' ), 400, 'button' ),
		);
	}

	/**
	 * @dataProvider bad_requests
	 * @param string $method GET or POST.
	 * @param array  $change Query values replaced; all removed when empty and the method is GET.
	 * @param array  $body   Form values.
	 * @param int    $status Expected status.
	 * @param string $word   In the page.
	 */
	public function test_a_bad_request_gets_a_clear_page_and_changes_nothing( string $method, array $change, array $body, int $status, string $word ): void {
		$query    = 'GET' === $method && ! $change ? array() : array_merge( self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) ), $change );
		$response = self::call( $method, $query, $body );
		$this->assertSame( $status, $response->get_status() );
		$this->assertStringContainsString( $word, $response->get_data() );
		$this->assertFalse( $this->suppressed( 'new-posts' ) );
	}

	public function test_a_valid_link_is_never_limited_and_only_refusals_count_per_ip(): void {
		add_filter(
			'postbag_unsubscribe_rate_limits',
			static function (): array {
				return array( 'ip' => 3 );
			}
		);
		$query  = self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		$forged = array_merge( $query, array( 'signature' => str_repeat( 'x', 43 ) ) );
		// Someone who knows the address, and link scanners GETting the real link, from the same IP as the provider.
		for ( $i = 0; $i < 3; $i++ ) {
			$this->assertSame( 403, self::call( 'GET', $forged )->get_status() );
			$this->assertSame( 200, self::call( 'GET', $query )->get_status() );
		}
		$limited = self::call( 'GET', $forged );
		$this->assertSame( 429, $limited->get_status(), 'the IP used its window of refusals' );
		$this->assertSame( (string) Postbag_Unsubscribe_Endpoint::WINDOW, $limited->get_headers()['Retry-After'] );
		$this->assertSame( 429, self::call( 'GET', array() )->get_status(), 'an incomplete link is a refusal too' );

		$post = self::call( 'POST', $query, array( 'List-Unsubscribe' => 'One-Click' ) );
		$this->assertSame( 200, $post->get_status(), 'the real one-click POST goes through all the same' );
		$this->assertTrue( $this->suppressed( 'new-posts' ) );
		$other = self::query( $this->tokens()->url( 'new-posts', 'someone@example.net' ) );
		$this->assertSame( 200, self::call( 'POST', $other, array( 'List-Unsubscribe' => 'One-Click' ) )->get_status(), 'another address from the same IP too' );

		$_SERVER['REMOTE_ADDR'] = '198.51.100.7';
		$this->assertSame( 403, self::call( 'GET', $forged )->get_status(), 'another IP has its own window' );
		$this->now += Postbag_Unsubscribe_Endpoint::WINDOW;
		$_SERVER['REMOTE_ADDR'] = '192.0.2.251';
		$this->assertSame( 403, self::call( 'GET', $forged )->get_status(), 'a new window' );
	}

	public function test_a_repeated_valid_post_is_answered_without_a_second_change(): void {
		$query = self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		for ( $i = 0; $i < 3; $i++ ) {
			$this->assertSame( 200, self::call( 'POST', $query, array( 'List-Unsubscribe' => 'One-Click' ) )->get_status() );
		}
		$this->assertCount( 1, $this->plugin->suppression_inbox()->waiting(), 'one inbox document for three POSTs' );

		// Removed by an administrator meanwhile: the next unsubscribe is a change again.
		$this->plugin->suppression_inbox()->change( 'remove', Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ), self::ADDRESS, 'manual' );
		$this->assertFalse( $this->suppressed( 'new-posts' ) );
		$this->assertSame( 200, self::call( 'POST', $query, array( 'List-Unsubscribe' => 'One-Click' ) )->get_status() );
		$this->assertTrue( $this->suppressed( 'new-posts' ) );
		$this->assertCount( 3, $this->plugin->suppression_inbox()->waiting() );
	}

	public function test_the_unsubscribe_is_spooled_and_uploaded_after_the_response(): void {
		$query = self::query( $this->tokens()->url( 'new-posts', self::ADDRESS ) );
		self::call( 'POST', $query, array( 'List-Unsubscribe' => 'One-Click' ) );
		$this->assertCount( 1, $this->plugin->suppression_inbox()->waiting(), 'on disk before the answer' );
		$this->assertSame( array(), $this->s3->objects );

		$this->plugin->schedule_controls()->after_response();

		$this->assertSame( array(), $this->plugin->suppression_inbox()->waiting() );
		$keys = array_keys( $this->s3->objects );
		$this->assertCount( 1, $keys );
		$this->assertMatchesRegularExpression( '#^suppressions/inbox/[0-9a-f-]{36}\.json$#', $keys[0] );
		$doc = json_decode( $this->s3->objects[ $keys[0] ]['body'], true );
		$this->assertSame(
			array(
				'version' => 1,
				'action'  => 'add',
				'scope'   => Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ),
				'address' => 'reader@example.net',
				'reason'  => 'unsubscribe',
				'source'  => 'site',
				'site'    => home_url(),
				'at'      => $doc['at'],
			),
			$doc
		);
		$this->assertMatchesRegularExpression( '/^' . preg_quote( gmdate( 'Y-m-d\TH:i:s', $this->now ), '/' ) . '\.[0-9]{3}Z$/', $doc['at'], 'the time of the unsubscribe, in milliseconds' );
	}

	/**
	 * A marked mail to one recipient naming a list.
	 *
	 * @param string|string[] $to      Recipients.
	 * @param string[]        $headers More headers.
	 */
	private static function list_mail( $to, array $headers = array() ): bool {
		return wp_mail( $to, '[Non-priority!] Weekly digest', 'Hello', array_merge( array( 'X-Postbag-List: weekly' ), $headers ) );
	}

	public function test_a_wp_mail_naming_a_list_gets_the_headers_and_meta_list(): void {
		$this->assertTrue( self::list_mail( 'Reader <' . self::ADDRESS . '>' ) );
		$batches = $this->flush_batches();
		$this->assertCount( 1, $batches );
		$meta = $batches[0]['meta'];
		$this->assertSame( Postbag_List_Unsubscribe::site_list( 'weekly' ), $meta['list'], 'this site\'s list' );
		$headers = array_column( $meta['headers'], 'value', 'name' );
		$this->assertArrayNotHasKey( 'X-Postbag-List', $headers, 'the list header is taken out' );
		$this->assertSame( 'List-Unsubscribe=One-Click', $headers['List-Unsubscribe-Post'] );
		$query = self::query( substr( $headers['List-Unsubscribe'], 1, -1 ) );
		$this->assertSame( array( $meta['list'], 'reader@example.net' ), array( $query['list'], $query['address'] ) );
		$this->assertNull( $this->tokens()->problem( $query['list'], $query['address'], $query['expires'], $query['signature'] ) );
		$schema = new Postbag_Schema_Checker( dirname( __DIR__, 3 ) . '/fixtures/batch-v1.schema.json' );
		$this->assertSame( array(), $schema->errors( (string) wp_json_encode( $batches[0] ) ), 'the sender\'s schema takes it' );
	}

	public function test_the_unsubscribe_mailto_goes_into_list_mail_and_job_manifests(): void {
		$this->use_settings( array( 'unsubscribe_mailto' => 'unsubscribe@example.org' ) );
		$this->assertTrue( self::list_mail( self::ADDRESS ) );
		$headers = array_column( $this->flush_batches()[0]['meta']['headers'], 'value', 'name' );
		$this->assertStringEndsWith( '>, <mailto:unsubscribe@example.org?subject=unsubscribe>', $headers['List-Unsubscribe'] );

		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => self::ADDRESS ) ),
				'subject'    => 'New post',
				'html'       => '<p>Hi</p>',
				'from'       => 'Blog <news@example.org>',
			)
		);
		$this->plugin->jobs()->stream_pending();
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( array( Postbag_List_Unsubscribe::site_list( 'notifications' ), 'unsubscribe@example.org' ), array( $manifest['meta']['list'], $manifest['meta']['unsubscribe_mailto'] ), 'the sender adds the mailto to each row\'s link' );
	}

	public function test_the_list_filter_names_a_list_too(): void {
		add_filter(
			'postbag_mail_list',
			static function (): string {
				return 'comments';
			}
		);
		$this->assertTrue( wp_mail( self::ADDRESS, '[Non-priority!] Reply', 'Hello' ) );
		$this->assertSame( Postbag_List_Unsubscribe::site_list( 'comments' ), $this->flush_batches()[0]['meta']['list'] );
	}

	/**
	 * List mail wp_mail() refuses: the code and field of wp_mail_failed.
	 */
	public function refused_list_mail(): array {
		return array(
			'two To recipients'         => array( array( 'a@example.net', 'b@example.net' ), array(), 'postbag_list_needs_one_recipient', 'to' ),
			'one To and one Bcc'        => array( 'a@example.net', array( 'Bcc: b@example.net' ), 'postbag_list_needs_one_recipient', 'to' ),
			'the caller\'s own header'  => array( 'a@example.net', array( 'List-Unsubscribe: <https://example.org/u>' ), 'postbag_list_unsubscribe_given', 'header List-Unsubscribe' ),
			'a list name not allowed'   => array( 'a@example.net', array( 'X-Postbag-List: Weekly News' ), 'postbag_invalid_list', 'X-Postbag-List' ),
		);
	}

	/**
	 * @dataProvider refused_list_mail
	 * @param string|string[] $to      Recipients.
	 * @param string[]        $headers More headers.
	 * @param string          $code    wp_mail_failed's postbag_reason.
	 * @param string          $field   Its postbag_field.
	 */
	public function test_list_mail_that_cannot_carry_one_link_is_refused( $to, array $headers, string $code, string $field ): void {
		$this->assertFalse( 'postbag_invalid_list' === $code ? wp_mail( $to, '[Non-priority!] Weekly digest', 'Hello', $headers ) : self::list_mail( $to, $headers ) );
		$this->assertCount( 1, $this->failures );
		$data = $this->failures[0]->get_error_data();
		$this->assertSame( array( $code, $field ), array( $data['postbag_reason'], $data['postbag_field'] ) );
		$this->assertSame( array(), $this->flush_batches() );
	}

	public function test_a_suppressed_recipient_of_a_list_mail_is_left_out_and_recorded(): void {
		$this->plugin->suppression_inbox()->change( 'add', Postbag_Suppressions::ALL, self::ADDRESS, 'manual' );
		$seen = array();
		add_action(
			'postbag_mail_suppressed',
			static function ( string $address, string $list ) use ( &$seen ): void {
				$seen[] = array( $address, $list );
			},
			10,
			2
		);
		$this->assertTrue( self::list_mail( self::ADDRESS ), 'not a failure' );
		$this->assertSame( array( array( self::ADDRESS, Postbag_List_Unsubscribe::site_list( 'weekly' ) ) ), $seen );
		$this->assertSame( array(), $this->failures );
		$this->plugin->flush();
		$this->assertSame( array(), $this->s3->calls, 'no batch was uploaded' );
	}

	public function test_on_a_site_without_https_a_list_mail_goes_without_list_or_headers(): void {
		remove_all_filters( 'rest_url' );
		$this->assertTrue( self::list_mail( self::ADDRESS ) );
		$meta = $this->flush_batches()[0]['meta'];
		$this->assertArrayNotHasKey( 'list', $meta, 'the sender wants the list and its headers together' );
		$this->assertArrayNotHasKey( 'headers', $meta );
	}

	public function test_site_health_names_each_problem(): void {
		$health = new Postbag_Unsubscribe_Health(
			$this->plugin->lists(),
			$this->plugin->suppression_inbox(),
			function (): int {
				return $this->now;
			}
		);
		$result = $health->result();
		$this->assertSame( 'recommended', $result['status'], 'https, but no POSTBAG_UNSUBSCRIBE_SECRET on the test site' );
		$this->assertStringContainsString( 'POSTBAG_UNSUBSCRIBE_SECRET', $result['description'] );

		$this->s3->fail_pattern = '/./';
		$this->plugin->suppression_inbox()->change( 'add', 'list:news', self::ADDRESS, 'unsubscribe' );
		$this->plugin->suppression_inbox()->send( true );
		$this->assertSame( 'recommended', $health->result()['status'], 'waiting a little is normal' );
		$this->now += HOUR_IN_SECONDS + 1;
		$this->assertSame( 'critical', $health->result()['status'] );
		$this->assertStringContainsString( 'waited more than an hour', $health->result()['description'] );

		remove_all_filters( 'rest_url' );
		$this->assertCount( 3, $health->problems() );
		$this->assertStringContainsString( 'not served over https', $health->result()['description'] );
	}
}
