<?php
/**
 * The site's suppression list: address hashes, the inbox documents on their
 * way to the sender (through an S3 outage), the sender's export mirrored,
 * suppressed recipients left out of a job, and the administrators' routes.
 *
 * @package Postbag\Tests
 */

/**
 * Runs against the test site's database (the table is emptied per test) and
 * the fake S3 client; inbox documents are checked against the sender's
 * schema, fixtures/suppression-v1.schema.json.
 */
final class Postbag_SuppressionTest extends Postbag_Unit_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		Postbag_Suppressions::install();
		$GLOBALS['wpdb']->query( 'TRUNCATE TABLE ' . Postbag_Suppressions::table() );
		$GLOBALS['wp_rest_server'] = null; // A server of this test's plugin: rest_api_init runs again.
		wp_set_current_user( 0 );
	}

	protected function tearDown(): void {
		$GLOBALS['wp_rest_server'] = null;
		wp_set_current_user( 0 );
		parent::tearDown();
	}

	private static function fixture( string $name ): array {
		return json_decode( (string) file_get_contents( dirname( __DIR__, 3 ) . '/fixtures/' . $name ), true, 512, JSON_THROW_ON_ERROR );
	}

	/**
	 * The shared vectors, by id.
	 */
	public function address_vectors(): array {
		$cases = array();
		foreach ( self::fixture( 'suppression/address-hash.json' )['vectors'] as $vector ) {
			$cases[ $vector['id'] ] = array( $vector['address'], $vector['normalised'], $vector['address_hash'] );
		}
		return $cases;
	}

	/**
	 * @dataProvider address_vectors
	 * @param string $address    As given.
	 * @param string $normalised ASCII whitespace stripped, case-folded.
	 * @param string $hash       SHA-256 of it.
	 */
	public function test_addresses_normalise_and_hash_as_the_sender_does( string $address, string $normalised, string $hash ): void {
		$this->assertSame( $normalised, Postbag_Suppressions::normalise( $address ) );
		$this->assertSame( $hash, Postbag_Suppressions::hash( $address ) );
	}

	private function inbox(): Postbag_Suppression_Inbox {
		return $this->plugin->suppression_inbox();
	}

	/**
	 * @return array<string, array> Inbox documents in the bucket, by key.
	 */
	private function uploaded_docs(): array {
		$docs = array();
		foreach ( $this->s3->objects as $key => $object ) {
			if ( 0 === strpos( $key, Postbag_Suppression_Inbox::PREFIX ) ) {
				$docs[ $key ] = json_decode( $object['body'], true );
			}
		}
		return $docs;
	}

	public function test_an_unsubscribe_made_while_s3_is_down_waits_and_is_uploaded_later(): void {
		$this->s3->fail_pattern = '/^suppressions\//';
		$scope                  = Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) );
		$this->inbox()->change( 'add', $scope, 'Zoe@Example.NET', 'unsubscribe' );
		$this->assertTrue( (bool) $this->plugin->lists()->suppressed( 'new-posts', array( 'zoe@example.net' ) ), 'recorded here at once' );

		$this->assertSame( 1, $this->inbox()->send( true ), 'S3 refused it: still waiting' );
		$waiting = $this->inbox()->waiting();
		$this->assertCount( 1, $waiting, 'kept in the spool' );
		$entry = reset( $waiting );
		$this->assertSame( 1, $entry['attempts'] );
		$this->assertStringContainsString( '503', $entry['last_error'] );
		$this->assertGreaterThan( $this->now, $entry['next_attempt_at'], 'backed off' );
		$this->assertNotFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'a retry is planned' );

		$this->s3->fail_pattern = null;
		$this->assertSame( 1, $this->inbox()->send(), 'not due yet' );
		$this->now = (int) $entry['next_attempt_at'];
		do_action( Postbag_Spool_Retry::HOOK ); // The cron event of the spool retries the inbox too.

		$this->assertSame( array(), $this->inbox()->waiting() );
		$docs = $this->uploaded_docs();
		$this->assertCount( 1, $docs );
		$doc = reset( $docs );
		$this->assertSame( array( 'add', $scope, 'zoe@example.net', 'unsubscribe' ), array( $doc['action'], $doc['scope'], $doc['address'], $doc['reason'] ) );
		$this->assertStringStartsWith( gmdate( 'Y-m-d\TH:i:s', 1795330800 ) . '.', $doc['at'], 'the time of the unsubscribe, not of the upload' );
	}

	public function test_changes_in_one_second_have_increasing_times_in_milliseconds(): void {
		$this->inbox()->change( 'add', Postbag_Suppressions::ALL, 'zoe@example.net', 'manual' );
		$this->inbox()->change( 'remove', Postbag_Suppressions::ALL, 'zoe@example.net', 'manual' );
		$this->inbox()->change( 'add', Postbag_Suppressions::ALL, 'zoe@example.net', 'manual' );
		$times = array();
		foreach ( $this->inbox()->waiting() as $entry ) {
			$this->assertMatchesRegularExpression( '/^' . preg_quote( gmdate( 'Y-m-d\TH:i:s', $this->now ), '/' ) . '\.[0-9]{3}Z$/', $entry['doc']['at'], 'the clock\'s second, with milliseconds' );
			$times[ $entry['doc']['at'] ] = $entry['doc']['action'];
		}
		ksort( $times );
		$this->assertSame( array( 'add', 'remove', 'add' ), array_values( $times ), 'three different times, in the order of the changes: the sender applies only a newer one' );
	}

	public function test_inbox_documents_meet_the_senders_schema(): void {
		$this->inbox()->change( 'add', 'list:new-posts', ' Zoe@Example.NET ', 'unsubscribe' );
		$this->inbox()->change( 'add', Postbag_Suppressions::ALL, 'ÉLODIE@exemple.fr', 'manual' );
		$this->inbox()->change( 'remove', Postbag_Suppressions::ALL, 'élodie@exemple.fr', 'manual' );
		$this->inbox()->send( true );

		$schema = new Postbag_Schema_Checker( dirname( __DIR__, 3 ) . '/fixtures/suppression-v1.schema.json' );
		$docs   = $this->uploaded_docs();
		$this->assertCount( 3, $docs );
		foreach ( $docs as $key => $doc ) {
			$this->assertSame( array(), $schema->errors( (string) wp_json_encode( $doc ) ), $key );
		}
		$actions = array_column( $docs, 'action' );
		sort( $actions );
		$this->assertSame( array( 'add', 'add', 'remove' ), $actions );
		$this->assertFalse( (bool) $this->plugin->lists()->suppressed( 'any', array( 'elodie@exemple.fr', 'élodie@exemple.fr' ) ), 'removed again' );
	}

	public function test_the_senders_export_is_mirrored_and_an_unchanged_one_costs_no_work(): void {
		$this->inbox()->change( 'add', Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'weekly' ) ), 'mine@example.net', 'unsubscribe' ); // Made here, not yet in the export.
		$this->assertSame( 'no export yet', $this->inbox()->sync() );

		$export = self::fixture( 'suppression/export/example.json' );
		$this->s3->objects[ Postbag_Suppression_Inbox::EXPORT_KEY ] = array(
			'body'         => wp_json_encode( $export ),
			'content_type' => 'application/json',
		);
		$this->assertSame( 'mirrored: 2 added, 0 removed, 0 skipped', $this->inbox()->sync() );
		$this->assertSame( 'unchanged', $this->inbox()->sync() );
		$this->assertTrue( (bool) $this->plugin->lists()->suppressed( 'anything', array( 'user@example.org' ) ), 'a hard bounce: every list' );
		$this->assertTrue( (bool) $this->plugin->lists()->suppressed( 'weekly', array( 'mine@example.net' ) ) );

		// The operator removed the bounce; a bad entry is skipped alone.
		$export['entries']   = array( $export['entries'][1], array( 'address_hash' => 'nope' ) );
		$this->s3->objects[ Postbag_Suppression_Inbox::EXPORT_KEY ]['body'] = wp_json_encode( $export );
		$this->assertSame( 'mirrored: 1 added, 1 removed, 1 skipped', $this->inbox()->sync() );
		$this->assertFalse( (bool) $this->plugin->lists()->suppressed( 'anything', array( 'user@example.org' ) ) );
		$this->assertSame( array( 'list:new-posts' ), array_column( ( new Postbag_Suppressions() )->entries( Postbag_Suppressions::hash( 'user@example.org' ) ), 'scope' ), 'a list entry of the export, kept as it is' );
		$this->assertTrue( (bool) $this->plugin->lists()->suppressed( 'weekly', array( 'mine@example.net' ) ), 'what the site made stays' );

		$this->s3->objects[ Postbag_Suppression_Inbox::EXPORT_KEY ]['body'] = '{"version": 2}';
		$this->assertStringStartsWith( 'damaged export', $this->inbox()->sync() );
	}

	/**
	 * Puts an export of these entries in the bucket.
	 *
	 * @param int      $generated_at Unix time.
	 * @param string[] $addresses    Each one suppressed for `all`, as the site asked.
	 */
	private function export( int $generated_at, array $addresses ): void {
		$entries = array();
		foreach ( $addresses as $address ) {
			$entries[] = array(
				'address_hash' => Postbag_Suppressions::hash( $address ),
				'address'      => $address,
				'scope'        => Postbag_Suppressions::ALL,
				'reason'       => 'manual',
				'source'       => 'site',
				'at'           => gmdate( 'Y-m-d\TH:i:s.000\Z', $this->now ),
			);
		}
		$this->s3->objects[ Postbag_Suppression_Inbox::EXPORT_KEY ] = array(
			'body'         => wp_json_encode(
				array(
					'version'      => 1,
					'generated_at' => gmdate( 'Y-m-d\TH:i:s.000\Z', $generated_at ),
					'entries'      => $entries,
				)
			),
			'content_type' => 'application/json',
		);
	}

	/** @param string $address An address. */
	private function suppressed_here( string $address ): bool {
		return (bool) $this->plugin->lists()->suppressed( 'any', array( $address ) );
	}

	public function test_a_site_entry_removed_on_the_sender_is_removed_here_too(): void {
		$this->inbox()->change( 'add', Postbag_Suppressions::ALL, 'gone@example.net', 'manual' );
		$this->inbox()->send( true );
		$this->export( $this->now + 60, array( 'gone@example.net' ) );
		$this->inbox()->sync();
		$this->assertSame( array( Postbag_Suppressions::ORIGIN_SENDER ), array_column( ( new Postbag_Suppressions() )->entries( Postbag_Suppressions::hash( 'gone@example.net' ) ), 'origin' ), 'the sender has it now' );

		// Made here meanwhile: one just now, one long ago whose document still waits for S3.
		$this->s3->fail_pattern = '/^suppressions\/inbox\//';
		$this->inbox()->change( 'add', Postbag_Suppressions::ALL, 'waiting@example.net', 'manual' );
		$this->inbox()->send( true );
		$this->s3->fail_pattern = null;
		$this->now += HOUR_IN_SECONDS;
		( new Postbag_Suppressions() )->add( 'fresh@example.net', Postbag_Suppressions::ALL, 'manual', 'site', $this->now - 60 );

		// `postbag suppression remove` on the operator's side: the next export leaves it out.
		$this->export( $this->now, array() );
		$this->assertSame( 'mirrored: 0 added, 1 removed, 0 skipped', $this->inbox()->sync() );
		$this->assertFalse( $this->suppressed_here( 'gone@example.net' ), 'the operator\'s removal reached the site' );
		$this->assertTrue( $this->suppressed_here( 'fresh@example.net' ), 'younger than the export\'s margin: the sender may not have it yet' );
		$this->assertTrue( $this->suppressed_here( 'waiting@example.net' ), 'its document still waits in the spool' );

		// Long after, with nothing waiting: a row the sender does not list is not on the list.
		$this->inbox()->send( true );
		$this->export( $this->now + HOUR_IN_SECONDS, array( 'waiting@example.net' ) );
		$this->assertSame( 'mirrored: 1 added, 1 removed, 0 skipped', $this->inbox()->sync() );
		$this->assertFalse( $this->suppressed_here( 'fresh@example.net' ) );
		$this->assertTrue( $this->suppressed_here( 'waiting@example.net' ) );
	}

	public function test_suppressed_recipients_are_left_out_of_a_job_and_counted(): void {
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return set_url_scheme( $url, 'https' );
			}
		);
		$this->inbox()->change( 'add', Postbag_Suppressions::ALL, 'bounced@example.net', 'manual' );
		$this->inbox()->change( 'add', Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ), 'Left@Example.net', 'unsubscribe' );
		$this->inbox()->change( 'add', Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'weekly' ) ), 'other-list@example.net', 'unsubscribe' );
		$uploaded = self::job_uploads();
		$job_id = self::notify_new_posts(
			array( 'kept@example.net', 'bounced@example.net', 'left@example.net', 'other-list@example.net' ),
			'<p>Hi</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
		);
		$this->plugin->jobs()->stream_pending();

		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( Postbag_List_Unsubscribe::site_list( 'new-posts' ), $manifest['meta']['list'], 'this site\'s list' );
		$this->assertSame( 2, $manifest['recipients'] );
		$rows = array_map( 'json_decode', array_filter( explode( "\n", gzdecode( $this->s3->objects[ $manifest['parts'][0]['key'] ]['body'] ) ) ), array_fill( 0, 2, true ) );
		$this->assertSame( array( 'kept@example.net', 'other-list@example.net' ), array_column( $rows, 'email' ), 'scope all and the job\'s list are left out' );
		foreach ( $rows as $row ) {
			$query = array();
			parse_str( (string) wp_parse_url( $row['unsubscribe_url'], PHP_URL_QUERY ), $query );
			$this->assertSame( array( $manifest['meta']['list'], $row['email'] ), array( $query['list'], $query['address'] ) );
			$this->assertNull( $this->plugin->lists()->tokens()->problem( $query['list'], $query['address'], $query['expires'], $query['signature'] ) );
		}
		$this->assertSame( array( array( $job_id, 2, 0, 2 ) ), $uploaded->getArrayCopy(), 'job id, rows, dropped, suppressed' );
	}

	public function test_a_page_is_checked_in_slices_with_suppressed_rows_at_their_edges_left_out(): void {
		$size  = Postbag_Jobs::CHECK_ROWS;
		$edges = array( 0, $size - 1, $size, 2 * $size );
		foreach ( $edges as $n ) {
			$this->inbox()->change( 'add', Postbag_Suppressions::ALL, "r$n@example.net", 'manual' );
		}
		$uploaded = self::job_uploads();
		$emails = array();
		for ( $n = 0; $n <= 2 * $size; $n++ ) {
			$emails[] = "r$n@example.net";
		}
		$job_id = self::notify_new_posts( $emails );
		$this->plugin->jobs()->stream_pending();

		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$lines    = array_filter( explode( "\n", gzdecode( $this->s3->objects[ $manifest['parts'][0]['key'] ]['body'] ) ) );
		$written  = array_column( array_map( 'json_decode', $lines, array_fill( 0, count( $lines ), true ) ), 'email' );
		$kept     = array_values( array_diff( $emails, array_map( static fn ( int $n ): string => "r$n@example.net", $edges ) ) );
		$this->assertSame( $kept, $written, 'three slices of one page, in order, without the four' );
		$this->assertSame( array( array( $job_id, 2 * $size + 1 - 4, 0, 4 ) ), $uploaded->getArrayCopy(), 'job id, rows, dropped, suppressed' );
	}

	/**
	 * A notify job to these recipients of the list new-posts, held in memory, streamed while
	 * every read of the suppression table fails.
	 *
	 * @param string[] $emails Recipients.
	 * @return array{0: string, 1: array|null} Job id, and its manifest in the bucket (null: none).
	 */
	private function stream_while_the_table_fails( array $emails ): array {
		$job_id = self::notify_new_posts( $emails );
		$break = static function ( string $query ): string {
			return 0 === strpos( ltrim( $query ), 'SELECT' ) && false !== strpos( $query, Postbag_Suppressions::table() ) ? 'SELECT * FROM postbag_no_such_table' : $query;
		};
		add_filter( 'query', $break );
		$quiet = $GLOBALS['wpdb']->suppress_errors( true );
		$log   = ini_set( 'error_log', $this->temp_dir . '/php-errors.log' ); // phpcs:ignore WordPress.PHP.IniSet -- where this test reads the plugin's log line.
		try {
			$this->plugin->jobs()->stream_pending();
		} finally {
			ini_set( 'error_log', (string) $log ); // phpcs:ignore WordPress.PHP.IniSet
			$GLOBALS['wpdb']->suppress_errors( $quiet );
			remove_filter( 'query', $break );
		}
		$key = "jobs/$job_id/manifest.json";
		return array( $job_id, isset( $this->s3->objects[ $key ] ) ? json_decode( $this->s3->objects[ $key ]['body'], true ) : null );
	}

	public function test_a_failed_suppression_read_writes_a_list_jobs_rows_for_the_sender_to_check(): void {
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return set_url_scheme( $url, 'https' );
			}
		);
		$this->inbox()->change( 'add', Postbag_Suppressions::ALL, 'bounced@example.net', 'manual' );

		list( $job_id, $manifest ) = $this->stream_while_the_table_fails( array( 'kept@example.net', 'bounced@example.net' ) );

		$this->assertNotNull( $manifest, 'the job is not failed: its rows lived only in this worker' );
		$this->assertSame( array( Postbag_List_Unsubscribe::site_list( 'new-posts' ), 2 ), array( $manifest['meta']['list'], $manifest['recipients'] ), 'written unchecked: the sender checks meta.list\'s scope and all itself' );
		$this->assertStringContainsString( "job $job_id: 2 recipients written without the site's suppression check", (string) file_get_contents( $this->temp_dir . '/php-errors.log' ) );
	}

	public function test_without_meta_list_a_failed_suppression_read_still_stops_the_job(): void {
		// No https: no links, no meta.list, so the sender cannot check the list's scope.
		list( $job_id, $manifest ) = $this->stream_while_the_table_fails( array( 'kept@example.net' ) );
		$this->assertNull( $manifest );
		$this->assertSame( 'failed', postbag_job_status( $job_id )['state'] );
	}

	public function test_an_unsubscribe_after_the_job_was_queued_still_leaves_the_recipient_out(): void {
		$job_id = postbag_notify(
			array(
				'recipients' => array( 'callback' => 'Postbag_Suppression_Test_Source::page' ),
				'subject'    => 'New post',
				'html'       => '<p>Hi</p>',
				'from'       => 'Blog <news@example.org>',
				'list'       => 'new-posts',
			)
		);
		$this->inbox()->change( 'add', Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ), 'b@example.net', 'unsubscribe' );
		$this->plugin->jobs()->stream_pending();

		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( 2, $manifest['recipients'], 'checked when the recipients are read, not when the job was queued' );
	}

	public function test_a_large_list_is_looked_up_in_chunks_and_a_stream_sees_the_same(): void {
		$table   = new Postbag_Suppressions();
		$hashes  = array();
		$scopes  = array( Postbag_Suppressions::ALL, Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'new-posts' ) ) );
		$entries = array( 0 => 'all', Postbag_Suppressions::LOOKUP_CHUNK => $scopes[1], 2 * Postbag_Suppressions::LOOKUP_CHUNK + 9 => Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'weekly' ) ) );
		for ( $n = 0; $n < 2 * Postbag_Suppressions::LOOKUP_CHUNK + 10; $n++ ) {
			$hashes[ $n ] = Postbag_Suppressions::hash( "r$n@example.net" );
			if ( isset( $entries[ $n ] ) ) {
				$table->add( "r$n@example.net", $entries[ $n ], 'manual', 'site', $this->now );
			}
		}
		$expected = array(
			$hashes[0]                                  => true,
			$hashes[ Postbag_Suppressions::LOOKUP_CHUNK ] => true,
		);
		$this->assertSame( $expected, $table->suppressed( $hashes, $scopes ), 'three chunks, the other list\'s entry not found' );
		$this->assertSame( $expected, ( $this->plugin->lists()->checker( 'new-posts' ) )( $hashes ), 'the loaded set answers the same' );
		$set = $table->suppressed_set( $scopes );
		ksort( $set );
		$want = array_fill_keys( array_map( 'hex2bin', array_keys( $expected ) ), true );
		ksort( $want );
		$this->assertSame( $want, $set, 'binary keys' );
	}

	public function test_a_job_without_a_list_gets_the_default_one(): void {
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return set_url_scheme( $url, 'https' );
			}
		);
		$job_id = postbag_notify(
			array(
				'recipients' => array( array( 'email' => 'kept@example.net' ) ),
				'subject'    => 'New post',
				'html'       => '<p>Hi</p>',
				'from'       => 'Blog <news@example.org>',
			)
		);
		$this->plugin->jobs()->stream_pending();
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( Postbag_List_Unsubscribe::site_list( Postbag_List_Unsubscribe::DEFAULT_LIST ), $manifest['meta']['list'] );
	}

	/**
	 * @param string $method Method.
	 * @param string $route  Route under postbag/v1.
	 * @param array  $params Parameters.
	 */
	private static function call( string $method, string $route, array $params = array() ): WP_REST_Response {
		$request = new WP_REST_Request( $method, '/postbag/v1' . $route );
		foreach ( $params as $name => $value ) {
			$request->set_param( $name, $value );
		}
		return rest_do_request( $request );
	}

	/**
	 * Each admin route, called by someone who may not.
	 */
	public function forbidden_calls(): array {
		$hash = hash( 'sha256', 'user@example.org' );
		$who  = array(
			'logged out' => array( 0, 401 ),
			'subscriber' => array( -1, 403 ),
		);
		$routes = array(
			'GET list'   => array( 'GET', '/suppressions', array() ),
			'POST add'   => array( 'POST', '/suppressions', array( 'address' => 'user@example.org' ) ),
			'DELETE one' => array( 'DELETE', "/suppressions/$hash", array() ),
		);
		$cases = array();
		foreach ( $who as $name => list( $user, $status ) ) {
			foreach ( $routes as $route_name => $route ) {
				$cases[ "$route_name, $name" ] = array_merge( $route, array( $user, $status ) );
			}
		}
		return $cases;
	}

	/**
	 * @dataProvider forbidden_calls
	 * @param string $method Method.
	 * @param string $route  Route.
	 * @param array  $params Parameters.
	 * @param int    $user   0: nobody; -1: a subscriber.
	 * @param int    $status Expected status.
	 */
	public function test_the_admin_routes_refuse_anyone_but_administrators( string $method, string $route, array $params, int $user, int $status ): void {
		$this->plugin->suppression_inbox()->change( 'add', Postbag_Suppressions::ALL, 'user@example.org', 'manual' );
		wp_set_current_user( -1 === $user ? self::subscriber() : 0 );
		$response = self::call( $method, $route, $params );
		$this->assertSame( $status, $response->get_status() );
		$this->assertSame( 'rest_forbidden', $response->get_data()['code'] );
		$this->assertCount( 1, $GLOBALS['wpdb']->get_col( 'SELECT scope FROM ' . Postbag_Suppressions::table() ), 'nothing changed' );
	}

	public function test_an_administrator_adds_lists_searches_and_removes(): void {
		wp_set_current_user( 1 );
		$added = self::call(
			'POST',
			'/suppressions',
			array(
				'address' => ' Someone@Example.net ',
				'scope'   => 'list:weekly',
			)
		);
		$this->assertSame( 201, $added->get_status() );
		$this->assertSame( 'someone@example.net', $added->get_data()['address'] );
		$this->assertSame( Postbag_Suppressions::hash( 'someone@example.net' ), $added->get_data()['address_hash'] );
		$this->assertSame( array( Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( 'weekly' ) ), 'manual', 'site' ), array( $added->get_data()['scope'], $added->get_data()['reason'], $added->get_data()['source'] ) );
		self::call( 'POST', '/suppressions', array( 'address' => 'other@example.org' ) );

		$all = self::call( 'GET', '/suppressions', array( 'per_page' => 1 ) );
		$this->assertSame( '2', $all->get_headers()['X-WP-Total'] );
		$this->assertSame( '2', $all->get_headers()['X-WP-TotalPages'] );
		$this->assertCount( 1, $all->get_data() );
		$found = self::call( 'GET', '/suppressions', array( 'search' => 'SOMEONE' ) );
		$this->assertSame( array( 'someone@example.net' ), array_column( $found->get_data(), 'address' ) );

		$bad = self::call( 'POST', '/suppressions', array( 'address' => 'not an address' ) );
		$this->assertSame( array( 400, 'address' ), array( $bad->get_status(), $bad->get_data()['data']['field'] ) );
		$bad = self::call(
			'POST',
			'/suppressions',
			array(
				'address' => 'a@example.org',
				'scope'   => 'list:Bad Name',
			)
		);
		$this->assertSame( array( 400, 'scope' ), array( $bad->get_status(), $bad->get_data()['data']['field'] ) );

		$removed = self::call( 'DELETE', '/suppressions/' . Postbag_Suppressions::hash( 'someone@example.net' ) );
		$this->assertSame( 200, $removed->get_status() );
		$this->assertSame( 404, self::call( 'DELETE', '/suppressions/' . Postbag_Suppressions::hash( 'someone@example.net' ) )->get_status() );
		$this->assertSame( array( 'other@example.org' ), array_column( self::call( 'GET', '/suppressions' )->get_data(), 'address' ) );

		$actions = array_column( array_column( $this->inbox()->waiting(), 'doc' ), 'action' );
		sort( $actions );
		$this->assertSame( array( 'add', 'add', 'remove' ), $actions, 'each change spooled for the sender' );
	}
}

/**
 * A recipients callback of three rows.
 */
final class Postbag_Suppression_Test_Source {

	/**
	 * @param array $args   Unused.
	 * @param mixed $cursor Null at first.
	 */
	public static function page( array $args, $cursor ): array {
		unset( $args );
		return array(
			'rows'   => null === $cursor ? array( array( 'email' => 'a@example.net' ), array( 'email' => 'B@example.net' ), array( 'email' => 'c@example.net' ) ) : array(),
			'cursor' => null === $cursor ? 1 : null,
		);
	}
}
