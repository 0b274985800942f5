<?php
/**
 * postbag_notify(): refused by argument, or recorded and streamed after the response.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * Recipients a test's callback source serves, by cursor (a callback must be
 * a function defined in every request: a static method named by string).
 */
final class Postbag_Notify_Test_Source {

	/** @var int Rows the source has. */
	public static $total = 0;

	/** @var int Calls so far. */
	public static $calls = 0;

	/**
	 * @param array    $args   Job's stored args (`domain`).
	 * @param int|null $cursor Last row served.
	 * @param int      $limit  Page size.
	 */
	public static function page( array $args, $cursor, int $limit ): array {
		++self::$calls;
		$from = (int) $cursor;
		$to   = min( self::$total, $from + ( $args['page'] ?? $limit ) ); // A page may hold more rows than asked.
		usleep( $args['sleep_us'] ?? 0 );
		$rows = array();
		for ( $n = $from; $n < $to; $n++ ) {
			$rows[] = array(
				'email' => "r$n@" . $args['domain'],
				'vars'  => array( 'n' => $n ),
			);
		}
		return array(
			'rows'   => $rows,
			'cursor' => $to < self::$total ? $to : null,
		);
	}
}

/**
 * @covers Postbag_Jobs
 * @covers Postbag_Notify_Args
 * @covers Postbag_Recipient_Source
 * @covers Postbag_Part_Writer
 * @covers Postbag_Job_Format_V2
 */
final class Postbag_NotifyTest extends Postbag_Unit_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		Postbag_Notify_Test_Source::$total = 0;
		Postbag_Notify_Test_Source::$calls = 0;
	}

	/** Arguments every valid job has; a case changes one. */
	private static function valid( array $changes = array(), array $without = array() ): array {
		$args = array_merge(
			array(
				'recipients' => array( array( 'email' => 'zoe@example.net' ) ),
				'subject'    => 'New post: {{ post.title }}',
				'html'       => '<p>Hi {{ recipient.name }}, {{ post.title }} is out.</p>',
				'context'    => array( 'post' => array( 'title' => 'Hello' ) ),
				'from'       => 'Blog <news@example.org>',
			),
			$changes
		);
		return array_diff_key( $args, array_flip( $without ) );
	}

	/**
	 * Each bad argument: the WP_Error code and the field its data names.
	 */
	public function bad_arguments(): array {
		$fp = fopen( 'php://memory', 'r' );
		return array(
			'recipients missing'            => array( self::valid( array(), array( 'recipients' ) ), 'postbag_missing_argument', 'recipients' ),
			'recipients a string'           => array( self::valid( array( 'recipients' => 'zoe@example.net' ) ), 'postbag_invalid_argument', 'recipients' ),
			'user_query not an array'       => array( self::valid( array( 'recipients' => array( 'user_query' => 'subscriber' ) ) ), 'postbag_invalid_argument', 'recipients.user_query' ),
			'user_query with offset'        => array( self::valid( array( 'recipients' => array( 'user_query' => array( 'offset' => 10 ) ) ) ), 'postbag_invalid_argument', 'recipients.user_query.offset' ),
			'user_query with number'        => array( self::valid( array( 'recipients' => array( 'user_query' => array( 'number' => 10 ) ) ) ), 'postbag_invalid_argument', 'recipients.user_query.number' ),
			'user_query with an object'     => array( self::valid( array( 'recipients' => array( 'user_query' => array( 'include' => array( new stdClass() ) ) ) ) ), 'postbag_invalid_argument', 'recipients.user_query' ),
			'user_query with a resource'    => array( self::valid( array( 'recipients' => array( 'user_query' => array( 'x' => $fp ) ) ) ), 'postbag_invalid_argument', 'recipients.user_query' ),
			'callback a closure by key'     => array( self::valid( array( 'recipients' => array( 'callback' => static function () {} ) ) ), 'postbag_invalid_argument', 'recipients.callback' ),
			'callback not defined'          => array( self::valid( array( 'recipients' => array( 'callback' => 'postbag_no_such_function' ) ) ), 'postbag_invalid_argument', 'recipients.callback' ),
			'callback args not an array'    => array( self::valid( array( 'recipients' => array( 'callback' => 'Postbag_Notify_Test_Source::page', 'args' => 'x' ) ) ), 'postbag_invalid_argument', 'recipients.args' ),
			'callback with another key'     => array( self::valid( array( 'recipients' => array( 'callback' => 'Postbag_Notify_Test_Source::page', 'limit' => 3 ) ) ), 'postbag_invalid_argument', 'recipients' ),
			'subject missing'               => array( self::valid( array(), array( 'subject' ) ), 'postbag_missing_argument', 'subject' ),
			'subject empty'                 => array( self::valid( array( 'subject' => ' ' ) ), 'postbag_invalid_argument', 'subject' ),
			'subject with CRLF'             => array( self::valid( array( 'subject' => "Hi\r\nBcc: evil@bad.net" ) ), 'postbag_header_injection', 'subject' ),
			'subject with a tab'            => array( self::valid( array( 'subject' => "Hi\tthere" ) ), 'postbag_control_character', 'subject' ),
			'subject with U+2028'           => array( self::valid( array( 'subject' => "Hi\u{2028}there" ) ), 'postbag_control_character', 'subject' ),
			'subject encoded word'          => array( self::valid( array( 'subject' => '=?utf-8?b?DQpCY2M6IGV2aWxAYmFkLm5ldA==?=' ) ), 'postbag_header_injection', 'subject' ),
			'subject too long'              => array( self::valid( array( 'subject' => str_repeat( 'é', 2001 ) ) ), 'postbag_too_large', 'subject' ),
			'subject not UTF-8'             => array( self::valid( array( 'subject' => "Caf\xE9" ) ), 'postbag_invalid_utf8', 'subject' ),
			'subject unclosed {{'           => array( self::valid( array( 'subject' => 'New: {{ post.title' ) ), 'postbag_template_syntax', 'subject' ),
			'html missing'                  => array( self::valid( array(), array( 'html' ) ), 'postbag_missing_argument', 'html' ),
			'html not text'                 => array( self::valid( array( 'html' => array( '<p>x</p>' ) ) ), 'postbag_invalid_argument', 'html' ),
			'html stray }}'                 => array( self::valid( array( 'html' => '<p>{{ a }} b }}</p>' ) ), 'postbag_template_syntax', 'html' ),
			'html unclosed {%'              => array( self::valid( array( 'html' => '<p>{% if a %}x{% endif</p>' ) ), 'postbag_template_syntax', 'html' ),
			'html {{ inside {%'             => array( self::valid( array( 'html' => '{% if {{ a }} %}x{% endif %}' ) ), 'postbag_template_syntax', 'html' ),
			'html too long'                 => array( self::valid( array( 'html' => str_repeat( 'x', 1048577 ) ) ), 'postbag_too_large', 'html' ),
			'text unclosed comment'         => array( self::valid( array( 'text' => 'Hi {# note' ) ), 'postbag_template_syntax', 'text' ),
			'text not text'                 => array( self::valid( array( 'text' => 42 ) ), 'postbag_invalid_argument', 'text' ),
			'context a list'                => array( self::valid( array( 'context' => array( 'a', 'b' ) ) ), 'postbag_invalid_argument', 'context' ),
			'context a string'              => array( self::valid( array( 'context' => 'post' ) ), 'postbag_invalid_argument', 'context' ),
			'context bad UTF-8'             => array( self::valid( array( 'context' => array( 'title' => "Caf\xE9" ) ) ), 'postbag_invalid_argument', 'context' ),
			'context NaN'                   => array( self::valid( array( 'context' => array( 'n' => NAN ) ) ), 'postbag_invalid_argument', 'context' ),
			'list with capitals'            => array( self::valid( array( 'list' => 'New-Posts' ) ), 'postbag_invalid_argument', 'list' ),
			'list not text'                 => array( self::valid( array( 'list' => array( 'a' ) ) ), 'postbag_invalid_argument', 'list' ),
			'list longer than 55'           => array( self::valid( array( 'list' => str_repeat( 'a', 56 ) ) ), 'postbag_invalid_argument', 'list' ),
			'from invalid address'          => array( self::valid( array( 'from' => 'Blog <not-an-address>' ) ), 'postbag_invalid_address', 'from' ),
			'from with LF'                  => array( self::valid( array( 'from' => "news@example.org\nBcc: evil@bad.net" ) ), 'postbag_header_injection', 'from' ),
			'from name with a control char' => array( self::valid( array( 'from' => "Bl\x07og <news@example.org>" ) ), 'postbag_control_character', 'from' ),
			'from not text'                 => array( self::valid( array( 'from' => array( 'news@example.org' ) ) ), 'postbag_invalid_argument', 'from' ),
			'reply_to invalid'              => array( self::valid( array( 'reply_to' => array( 'editors@' ) ) ), 'postbag_invalid_address', 'reply_to' ),
			'reply_to with CR'              => array( self::valid( array( 'reply_to' => "a@example.org\rBcc: x@bad.net" ) ), 'postbag_header_injection', 'reply_to' ),
			'headers not an array'          => array( self::valid( array( 'headers' => 'X-A: b' ) ), 'postbag_invalid_argument', 'headers' ),
			'header Bcc reserved'           => array( self::valid( array( 'headers' => array( 'Bcc' => 'evil@bad.net' ) ) ), 'postbag_reserved_header', 'headers' ),
			'header value with LF'          => array( self::valid( array( 'headers' => array( 'X-Campaign' => "a\nBcc: evil@bad.net" ) ) ), 'postbag_header_injection', 'headers' ),
			'header bad name'               => array( self::valid( array( 'headers' => array( 'X Campaign' => 'a' ) ) ), 'postbag_invalid_header', 'headers' ),
			'header too long'               => array( self::valid( array( 'headers' => array( 'X-Long' => str_repeat( 'a', 999 ) ) ) ), 'postbag_invalid_header', 'headers' ),
			'headers too many'              => array( self::valid( array( 'headers' => array_fill_keys( array_map( static function ( int $n ): string { return "X-H$n"; }, range( 1, 16 ) ), 'v' ) ) ), 'postbag_invalid_header', 'headers' ),
			'attachment missing'            => array( self::valid( array( 'attachments' => array( '/nonexistent/report.pdf' ) ) ), 'postbag_attachment_unreadable', 'attachments' ),
			'attachment via a wrapper'      => array( self::valid( array( 'attachments' => array( 'php://filter/resource=/etc/passwd' ) ) ), 'postbag_attachment_path', 'attachments' ),
			'send_at 90 days and a second'  => array( self::valid( array( 'send_at' => 1795330800 + 90 * DAY_IN_SECONDS + 1 ) ), 'postbag_too_far_ahead', 'send_at' ),
			'send_at unreadable text'       => array( self::valid( array( 'send_at' => 'soonish' ) ), 'postbag_invalid_time', 'send_at' ),
			'send_at a day that is not'     => array( self::valid( array( 'send_at' => '2026-11-31 08:00' ) ), 'postbag_invalid_time', 'send_at' ),
			'send_at empty text'            => array( self::valid( array( 'send_at' => '' ) ), 'postbag_invalid_time', 'send_at' ),
			'send_at a float'               => array( self::valid( array( 'send_at' => 1795330900.5 ) ), 'postbag_invalid_time', 'send_at' ),
			'send_at and send_between'      => array( self::valid( array( 'send_at' => '2026-11-23T08:00:00Z', 'send_between' => array( '2026-11-23T08:00:00Z', '2026-11-23T12:00:00Z' ) ) ), 'postbag_invalid_schedule', 'send_between' ),
			'send_between one time'         => array( self::valid( array( 'send_between' => array( '2026-11-23T08:00:00Z' ) ) ), 'postbag_invalid_schedule', 'send_between' ),
			'send_between a string'         => array( self::valid( array( 'send_between' => '2026-11-23T08:00:00Z' ) ), 'postbag_invalid_schedule', 'send_between' ),
			'send_between end before start' => array( self::valid( array( 'send_between' => array( '2026-11-23T12:00:00Z', '2026-11-23T08:00:00Z' ) ) ), 'postbag_invalid_schedule', 'send_between.end' ),
			'send_between empty window'     => array( self::valid( array( 'send_between' => array( '2026-11-23T08:00:00Z', '2026-11-23T08:00:00Z' ) ) ), 'postbag_invalid_schedule', 'send_between.end' ),
			'send_between already ended'    => array( self::valid( array( 'send_between' => array( '2026-11-21T08:00:00Z', '2026-11-22T06:59:59Z' ) ) ), 'postbag_invalid_schedule', 'send_between.end' ),
			'send_between ends too late'    => array( self::valid( array( 'send_between' => array( '2027-02-19T08:00:00Z', '2027-02-20T08:00:00Z' ) ) ), 'postbag_too_far_ahead', 'send_between.end' ),
			'send_between bad start'        => array( self::valid( array( 'send_between' => array( 'whenever', '2026-11-23T08:00:00Z' ) ) ), 'postbag_invalid_time', 'send_between.start' ),
			'unknown argument'              => array( self::valid( array( 'cc' => 'boss@example.org' ) ), 'postbag_unknown_argument', 'cc' ),
		);
	}

	/**
	 * @dataProvider bad_arguments
	 */
	public function test_a_bad_argument_is_refused_naming_it_and_nothing_is_queued( array $args, string $code, string $field ): void {
		$result = postbag_notify( $args );

		$this->assertInstanceOf( WP_Error::class, $result );
		$this->assertSame( $code, $result->get_error_code(), $result->get_error_message() );
		$this->assertSame( array( 'field' => $field ), $result->get_error_data() );
		$this->assertNotSame( '', $result->get_error_message() );
		$this->assertSame( array(), $this->plugin->jobs()->ids(), 'nothing spooled' );
		$this->assertArrayNotHasKey( 'postbag_job_queued', $this->fired );
	}

	public function test_a_from_outside_the_allowed_senders_is_refused(): void {
		$this->use_settings( array( 'allowed_senders' => 'example.com' ) );
		$result = postbag_notify( self::valid() );
		$this->assertSame( 'postbag_sender_not_allowed', $result->get_error_code() );
		$this->assertSame( array( 'field' => 'from' ), $result->get_error_data() );
	}

	public function test_the_args_filter_runs_before_the_checks(): void {
		add_filter(
			'postbag_notify_args',
			static function ( array $args ): array {
				$args['subject'] = "Changed\nby a filter";
				return $args;
			}
		);
		$this->assertSame( 'postbag_header_injection', postbag_notify( self::valid() )->get_error_code() );
	}

	public function test_the_call_records_the_job_and_never_reads_its_recipients(): void {
		$read    = false;
		$job_id  = postbag_notify(
			self::valid(
				array(
					'recipients' => static function () use ( &$read ): Generator {
						$read = true;
						yield array( 'email' => 'zoe@example.net' );
					},
				)
			)
		);

		$this->assertIsString( $job_id );
		$this->assertMatchesRegularExpression( '/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/', $job_id );
		$this->assertFalse( $read, 'the source is read after the response, not in the call' );
		$this->assertSame( array(), $this->s3->calls, 'nothing uploaded during the request' );
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->ids() );
		$this->assertSame( $job_id, $this->fired['postbag_job_queued'][0][0] );
		$this->assertNotFalse( wp_next_scheduled( Postbag_Jobs::HOOK ), 'a continuation is planned before the response, in case the worker dies' );
		$this->assertTrue( $this->plugin->jobs()->has_pending() );
		foreach ( glob( $this->spool_dir . '/' . $job_id . '.*' ) as $file ) {
			$this->assertStringEndsWith( '.php', $file, 'every spool file is PHP, never served as it is' );
			if ( filesize( $file ) ) {
				$this->assertStringStartsWith( Postbag_Spool::GUARD, (string) file_get_contents( $file ) );
			}
		}

		$this->plugin->flusher()->on_shutdown(); // What shutdown runs after the response.

		$this->assertTrue( $read );
		$this->assertSame( array( $job_id ), array_column( $this->fired['postbag_job_uploaded'], 0 ) );
		$this->assertSame( array(), $this->plugin->jobs()->ids(), 'the spool is empty again' );
	}

	public function test_a_job_queued_by_later_shutdown_work_is_streamed_by_the_last_shutdown_function(): void {
		$this->plugin->flusher()->on_shutdown(); // Nothing to do yet.
		$job_id = postbag_notify( self::valid() );
		$this->plugin->flusher()->flush_stragglers();
		$this->assertSame( array( $job_id ), array_column( $this->fired['postbag_job_uploaded'], 0 ) );
	}

	public function test_parts_then_the_manifest_last_every_row_once(): void {
		// Served over https, as a site must be for a job to carry its list (and its unsubscribe links).
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return set_url_scheme( $url, 'https' );
			}
		);
		Postbag_Notify_Test_Source::$total = 25001;
		$job_id                            = postbag_notify(
			self::valid(
				array(
					'recipients' => array(
						'callback' => 'Postbag_Notify_Test_Source::page',
						'args'     => array(
							'domain' => 'example.net',
							'page'   => 30000,
						),
					),
					'text'       => 'Hi {{ recipient.email }}',
					'list'       => 'new-posts',
					'reply_to'   => 'Editors <editors@example.org>',
					'headers'    => array( 'X-Campaign: new-post 42' ),
				)
			)
		);
		$summary = $this->plugin->jobs()->stream_pending();

		$this->assertSame( array( $job_id ), $summary['uploaded'] );
		$this->assertSame( 25001, $summary['rows'] );
		$manifest_key = "jobs/$job_id/manifest.json";
		$calls        = $this->s3->calls;
		$this->assertSame( array( $manifest_key ), end( $calls ), 'the manifest is uploaded last, alone' );
		$manifest = json_decode( $this->s3->objects[ $manifest_key ]['body'], true );
		$this->assertSame( 'application/json', $this->s3->objects[ $manifest_key ]['content_type'] );
		$this->assertSame( 2, $manifest['version'] );
		$this->assertSame( 'notify', $manifest['kind'] );
		$this->assertSame( $job_id, $manifest['job_id'] );
		$this->assertSame( 25001, $manifest['recipients'] );
		$this->assertSame( 'Blog <news@example.org>', $manifest['meta']['from'] );
		$this->assertSame( array( 'Editors <editors@example.org>' ), $manifest['meta']['reply_to'] );
		$this->assertSame( array( array( 'name' => 'X-Campaign', 'value' => 'new-post 42' ) ), $manifest['meta']['headers'] );
		$this->assertSame( Postbag_List_Unsubscribe::site_list( 'new-posts' ), $manifest['meta']['list'] );
		$this->assertSame( array( 'post' => array( 'title' => 'Hello' ) ), $manifest['context'] );
		$this->assertSame( array( 10000, 10000, 5001 ), array_column( $manifest['parts'], 'rows' ), 'parts of at most 10,000 rows, even from a larger page' );
		$this->assertSame( 1, Postbag_Notify_Test_Source::$calls );

		$seen = array();
		foreach ( $manifest['parts'] as $n => $part ) {
			$this->assertSame( sprintf( 'jobs/%s/part-%05d.ndjson.gz', $job_id, $n + 1 ), $part['key'] );
			$object = $this->s3->objects[ $part['key'] ];
			$this->assertSame( 'application/x-ndjson', $object['content_type'] );
			$this->assertSame( $part['bytes'], strlen( $object['body'] ) );
			$this->assertSame( $part['sha256'], hash( 'sha256', $object['body'] ) );
			$this->assertSame( "\x1f\x8b", substr( $object['body'], 0, 2 ), 'a gzip file' );
			$lines = explode( "\n", gzdecode( $object['body'] ) );
			$this->assertSame( '', array_pop( $lines ), 'every line ends in \n' );
			$this->assertCount( $part['rows'], $lines );
			foreach ( $lines as $line ) {
				$row                   = json_decode( $line, true );
				$seen[ $row['email'] ] = ( $seen[ $row['email'] ] ?? 0 ) + 1;
				$this->assertSame( "r{$row['vars']['n']}@example.net", $row['email'] );
			}
		}
		$this->assertCount( 25001, $seen );
		$this->assertSame( array( 1 ), array_values( array_unique( $seen ) ), 'every recipient once' );
	}

	public function test_a_job_paused_by_its_deadline_resumes_from_its_cursor(): void {
		Postbag_Notify_Test_Source::$total = 30000;
		$job_id                            = postbag_notify(
			self::valid(
				array(
					'recipients' => array(
						'callback' => 'Postbag_Notify_Test_Source::page',
						'args'     => array(
							'domain' => 'example.net',
							'page'   => 7000,
						),
					),
				)
			)
		);
		// A spent budget: each run reads one page, the least a run does.
		$runs = 0;
		do {
			$summary = $this->plugin->jobs()->stream_pending( microtime( true ) - 1 );
			++$runs;
			if ( 1 === $runs ) {
				$this->assertSame( array( $job_id ), $summary['paused'], 'stopped at the page boundary' );
				$this->assertSame( 1, Postbag_Notify_Test_Source::$calls );
				$this->assertSame( 7000, $summary['rows'] );
				$this->assertNotFalse( wp_next_scheduled( Postbag_Jobs::HOOK ), 'a continuation is planned' );
				$this->assertArrayNotHasKey( "jobs/$job_id/manifest.json", $this->s3->objects );
			}
		} while ( ! $summary['uploaded'] && $runs < 20 );

		$this->assertSame( array( $job_id ), $summary['uploaded'] );
		$this->assertSame( 5, $runs, 'a continuation per page' );
		$this->assertSame( 5, Postbag_Notify_Test_Source::$calls, 'no page read twice' );
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$emails   = array();
		foreach ( $manifest['parts'] as $part ) {
			foreach ( explode( "\n", trim( gzdecode( $this->s3->objects[ $part['key'] ]['body'] ) ) ) as $line ) {
				$emails[] = json_decode( $line, true )['email'];
			}
		}
		$this->assertSame( 30000, $manifest['recipients'] );
		$this->assertCount( 30000, array_unique( $emails ), 'no row dropped, none twice' );
	}

	public function test_the_time_budget_filter_sets_how_long_a_worker_streams(): void {
		Postbag_Notify_Test_Source::$total = 100000;
		add_filter(
			'postbag_notify_time_budget',
			static function (): int {
				return 1;
			}
		);
		$job_id  = postbag_notify(
			self::valid(
				array(
					'recipients' => array(
						'callback' => 'Postbag_Notify_Test_Source::page',
						'args'     => array(
							'domain'   => 'example.net',
							'page'     => 1000,
							'sleep_us' => 200000,
						),
					),
				)
			)
		);
		$started = microtime( true );
		$summary = $this->plugin->jobs()->after_response();

		$this->assertSame( array( $job_id ), $summary['paused'] );
		$this->assertGreaterThanOrEqual( 1.0, microtime( true ) - $started );
		$this->assertLessThan( 2.0, microtime( true ) - $started, 'stopped at the first page boundary after 1 s' );
		$this->assertGreaterThan( 1, Postbag_Notify_Test_Source::$calls, 'pages until the budget is spent' );
		$this->assertLessThanOrEqual( 6, Postbag_Notify_Test_Source::$calls, 'and none after' );
	}

	public function test_a_fault_in_the_middle_of_a_page_leaves_the_job_as_it_was_saved(): void {
		Postbag_Notify_Test_Source::$total = 25000;
		$faults                            = 1;
		add_filter(
			'postbag_notify_recipient',
			static function ( $row ) use ( &$faults ) {
				if ( 'r15000@example.net' === $row['email'] && $faults-- > 0 ) {
					throw new Postbag_Spool_Exception( 'disk full' ); // After the page's first part was written.
				}
				return $row;
			}
		);
		$job_id  = postbag_notify(
			self::valid(
				array(
					'recipients' => array(
						'callback' => 'Postbag_Notify_Test_Source::page',
						'args'     => array(
							'domain' => 'example.net',
							'page'   => 25000,
						),
					),
				)
			)
		);
		$summary = $this->plugin->jobs()->stream_pending();
		$this->assertSame( array( $job_id ), $summary['waiting'] );
		$this->assertSame( 'disk full', $this->fired['postbag_job_spooled'][0][1] );
		$this->assertSame( 0, $this->plugin->jobs()->states()[ $job_id ]['rows'], 'nothing of the page counted' );

		$this->now += 3600;
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['uploaded'] );
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( 25000, $manifest['recipients'] );
		$this->assertSame( array( 10000, 10000, 5000 ), array_column( $manifest['parts'], 'rows' ) );
		$this->assertSame( sprintf( 'jobs/%s/part-00001.ndjson.gz', $job_id ), $manifest['parts'][0]['key'], 'the part written before the fault is written again under its number' );
	}

	public function test_an_s3_outage_leaves_the_job_spooled_and_the_retry_uploads_it(): void {
		$this->s3->fail_pattern = '/^jobs\//';
		$job_id                 = postbag_notify( self::valid( array( 'recipients' => array( array( 'email' => 'a@example.net' ), array( 'email' => 'b@example.net' ) ) ) ) );
		$summary                = $this->plugin->jobs()->stream_pending();

		$this->assertSame( array(), $summary['uploaded'] );
		$this->assertSame( array( $job_id ), $summary['waiting'] );
		$this->assertSame( $job_id, $this->fired['postbag_job_spooled'][0][0] );
		$this->assertStringContainsString( '503', $this->fired['postbag_job_spooled'][0][1] );
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->ids(), 'the job waits in the spool' );
		$this->assertNotFalse( wp_next_scheduled( Postbag_Spool_Retry::HOOK ), 'the spool retry is planned' );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'never sent through wp_mail()' );
		$this->assertStringContainsString( '1 notify job is waiting for S3', $this->admin_notices() );
		$this->assertSame( '1', $this->plugin->admin()->debug_information( array() )['postbag']['fields']['postbag_jobs']['value'], 'Site Health counts it' );

		$this->s3->fail_pattern = null;
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['waiting'], 'backed off' );
		$this->now += 3600;
		do_action( Postbag_Spool_Retry::HOOK ); // What WP-Cron runs once the retry is due.

		$this->assertSame( array( $job_id ), array_column( $this->fired['postbag_job_uploaded'], 0 ) );
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( 2, $manifest['recipients'] );
		$this->assertSame( array(), $this->plugin->jobs()->ids() );
		$this->assertStringNotContainsString( 'notify job', $this->admin_notices() );
	}

	public function test_bad_rows_and_filtered_rows_are_left_out_alone(): void {
		add_filter(
			'postbag_notify_recipient',
			static function ( $row ) {
				return is_array( $row ) && 'skip@example.net' === $row['email'] ? false : $row;
			}
		);
		$job_id = postbag_notify(
			self::valid(
				array(
					'recipients' => new ArrayIterator(
						array(
							array( 'email' => 'ok@example.net', 'name' => 'Zoë', 'user_id' => '12', 'vars' => array( 'a' => array() ) ),
							array( 'email' => 'not-an-address' ),
							array( 'email' => 'skip@example.net' ),
							array( 'email' => 'bad-name@example.net', 'name' => "Evil\r\nBcc: x@bad.net" ),
							array( 'email' => 'list-vars@example.net', 'vars' => array( 1, 2 ) ),
							'just-a-string@example.net',
							array( 'email' => 'last@example.net', 'name' => '' ),
						)
					),
				)
			)
		);
		$summary = $this->plugin->jobs()->stream_pending();

		$this->assertSame( array( $job_id ), $summary['uploaded'] );
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( 2, $manifest['recipients'] );
		$this->assertSame(
			"{\"email\":\"ok@example.net\",\"name\":\"Zoë\",\"user_id\":12,\"vars\":{\"a\":[]}}\n{\"email\":\"last@example.net\"}\n",
			gzdecode( $this->s3->objects[ $manifest['parts'][0]['key'] ]['body'] )
		);
		$this->assertSame( array( $job_id, 2, 4 ), $this->fired['postbag_job_uploaded'][0] );
	}

	public function test_a_job_with_no_recipients_uploads_a_manifest_without_parts(): void {
		$job_id = postbag_notify( self::valid( array( 'recipients' => array() ) ) );
		$this->plugin->jobs()->stream_pending();
		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], false );
		$this->assertSame( array(), $manifest->parts );
		$this->assertSame( 0, $manifest->recipients );
		$this->assertCount( 1, $this->s3->objects );
	}

	public function test_an_empty_context_is_a_json_object_and_defaults_fill_the_from(): void {
		$job_id = postbag_notify( self::valid( array( 'context' => array() ), array( 'from' ) ) );
		$this->plugin->jobs()->stream_pending();
		$body = $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'];
		$this->assertStringContainsString( '"context": {}', $body );
		$this->assertMatchesRegularExpression( '/^WordPress <wordpress@[^>]+>$/', json_decode( $body, true )['meta']['from'] );
	}

	public function test_a_large_attachment_is_uploaded_before_the_manifest_that_names_it(): void {
		$this->use_settings( array( 'inline_attachment_max_bytes' => 10 ) );
		$path   = $this->temp_file( 'report.pdf', str_repeat( 'x', 1000 ) );
		$small  = $this->temp_file( 'note.txt', 'hi' );
		$job_id = postbag_notify( self::valid( array( 'attachments' => array( $path, $small ) ) ) );
		$this->plugin->jobs()->stream_pending();

		$manifest = json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true );
		$this->assertSame( "queue/attachments/$job_id/job/0", $manifest['attachments'][0]['s3_key'] );
		$this->assertSame( str_repeat( 'x', 1000 ), $this->s3->objects[ $manifest['attachments'][0]['s3_key'] ]['body'] );
		$this->assertSame( base64_encode( 'hi' ), $manifest['attachments'][1]['content_base64'] );
		$keys = array_merge( ...$this->s3->calls );
		$this->assertLessThan( array_search( "jobs/$job_id/manifest.json", $keys, true ), array_search( $manifest['attachments'][0]['s3_key'], $keys, true ) );
	}

	public function test_a_callback_that_breaks_its_contract_waits_with_the_reason(): void {
		$job_id  = postbag_notify( self::valid( array( 'recipients' => array( 'callback' => 'Postbag_NotifyTest::not_a_page' ) ) ) );
		$summary = $this->plugin->jobs()->stream_pending();
		$this->assertSame( array( $job_id ), $summary['waiting'] );
		$this->assertStringContainsString( 'must return', $this->fired['postbag_job_spooled'][0][1] );
		$this->assertArrayNotHasKey( "jobs/$job_id/manifest.json", $this->s3->objects );
	}

	/** A callback answering something else than a page. */
	public static function not_a_page(): string {
		return 'rows';
	}

	/**
	 * Runs `$test` with three users (ann, ben, cem, in ID order), removed afterwards.
	 *
	 * @param callable $test Gets their ids.
	 */
	private static function with_users( callable $test ): void {
		$ids = array();
		foreach ( array( 'ann', 'ben', 'cem' ) as $name ) {
			$ids[] = wp_insert_user(
				array(
					'user_login' => "postbag_unit_$name",
					'user_pass'  => wp_generate_password(),
					'user_email' => "$name@example.net",
				)
			);
		}
		try {
			$test( $ids );
		} finally {
			require_once ABSPATH . 'wp-admin/includes/user.php';
			foreach ( $ids as $id ) {
				wp_delete_user( $id );
			}
		}
	}

	/**
	 * The addresses in a job's parts, in order.
	 *
	 * @return string[]
	 */
	private function emails_of( string $job_id ): array {
		$emails = array();
		foreach ( json_decode( $this->s3->objects[ "jobs/$job_id/manifest.json" ]['body'], true )['parts'] as $part ) {
			foreach ( explode( "\n", trim( gzdecode( $this->s3->objects[ $part['key'] ]['body'] ) ) ) as $line ) {
				$emails[] = json_decode( $line, true )['email'];
			}
		}
		return $emails;
	}

	public function test_another_plugins_user_query_filter_cannot_break_the_keyset(): void {
		self::with_users(
			function ( array $ids ): void {
				add_action(
					'pre_user_query',
					static function ( WP_User_Query $query ): void {
						$query->query_orderby = 'ORDER BY user_login DESC';
						$query->query_limit   = 'LIMIT 1, 1';
					}
				);
				$job_id = postbag_notify( self::valid( array( 'recipients' => array( 'user_query' => array( 'include' => $ids ) ) ) ) );
				$this->plugin->jobs()->stream_pending();
				$this->assertSame( array( 'ann@example.net', 'ben@example.net', 'cem@example.net' ), $this->emails_of( $job_id ) );
			}
		);
	}

	public function test_a_database_error_is_no_end_of_the_users_the_job_waits(): void {
		self::with_users(
			function ( array $ids ): void {
				$job_id = postbag_notify( self::valid( array( 'recipients' => array( 'user_query' => array( 'include' => $ids ) ) ) ) );
				$break  = static function ( string $sql ): string {
					return false !== strpos( $sql, 'ORDER BY' ) && false !== strpos( $sql, '.ID > ' ) ? str_replace( 'ORDER BY', 'ORDER BY no_such_column,', $sql ) : $sql;
				};
				add_filter( 'query', $break );
				$suppressed = $GLOBALS['wpdb']->suppress_errors( true );
				try {
					$summary = $this->plugin->jobs()->stream_pending();
				} finally {
					$GLOBALS['wpdb']->suppress_errors( $suppressed );
					remove_filter( 'query', $break );
				}
				$this->assertSame( array( $job_id ), $summary['waiting'] );
				$this->assertStringContainsString( 'Reading users failed', $this->fired['postbag_job_spooled'][0][1] );
				$this->assertSame( array(), $this->s3->objects, 'not taken for the end of the users' );

				$this->now += 3600;
				$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['uploaded'] );
				$this->assertSame( array( 'ann@example.net', 'ben@example.net', 'cem@example.net' ), $this->emails_of( $job_id ) );
			}
		);
	}

	public function test_no_other_process_takes_a_job_before_its_request_streams_it(): void {
		$job_id = postbag_notify( self::valid() );
		$other  = new Postbag_Plugin( new Postbag_Config( array( 'bucket' => 'postbag-test' ) ), $this->s3, null, new Postbag_Spool( $this->spool_dir ) );

		$this->assertSame( 0, $other->jobs()->stream_pending()['jobs'], 'a cron run elsewhere meets the lock' );
		$this->assertSame( array(), $this->s3->objects );

		$this->assertSame( array( $job_id ), $this->plugin->jobs()->after_response()['uploaded'] );
		$this->assertSame( 0, $other->jobs()->stream_pending()['jobs'], 'and then finds nothing left' );
		$this->assertSame( array(), glob( $this->spool_dir . '/' . $job_id . '.*' ) );
	}

	public function test_a_failed_job_is_shown_until_an_administrator_dismisses_it(): void {
		$job_id  = postbag_notify(
			self::valid(
				array(
					'recipients' => static function (): Generator {
						yield array( 'email' => 'a@example.net' );
						throw new RuntimeException( 'the list went away' );
					},
				)
			)
		);
		$summary = $this->plugin->jobs()->stream_pending();

		$this->assertSame( array( $job_id ), $summary['failed'] );
		$this->assertSame( array( $job_id, 'Reading its recipients failed: the list went away' ), $this->fired['postbag_job_failed'][0] );
		$this->assertSame( array(), $this->s3->objects, 'nothing of it uploaded' );
		$notices = $this->admin_notices();
		$this->assertStringContainsString( "notify job $job_id failed and was not sent: Reading its recipients failed", $notices );
		$this->assertStringContainsString( 'value="' . Postbag_Admin::FORGET_JOB_ACTION . '"', $notices );

		self::wp_die_throws();
		$_POST['job'] = $job_id;
		wp_set_current_user( 1 );
		try {
			$_REQUEST['_wpnonce'] = 'forged';
			try {
				$this->plugin->admin()->handle_forget_job();
				$this->fail( 'A forged nonce was accepted.' );
			} catch ( RuntimeException $e ) {
				$this->assertStringStartsWith( 'wp_die:', $e->getMessage() );
			}
			$this->assertSame( array( $job_id ), $this->plugin->jobs()->ids() );

			$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Admin::FORGET_JOB_ACTION );
			$this->plugin->admin()->handle_forget_job();
		} finally {
			unset( $_POST['job'], $_REQUEST['_wpnonce'] );
			wp_set_current_user( 0 );
		}
		$this->assertSame( array(), $this->plugin->jobs()->ids() );
		$this->assertStringNotContainsString( 'notify job', $this->admin_notices() );
	}

	public function test_retry_now_uploads_waiting_jobs_at_once(): void {
		$this->s3->fail_pattern = '/^jobs\//';
		$job_id                 = postbag_notify( self::valid() );
		$this->plugin->jobs()->stream_pending();
		$this->s3->fail_pattern = null;
		wp_set_current_user( 1 );
		$_REQUEST['_wpnonce'] = wp_create_nonce( Postbag_Admin::RETRY_ACTION );
		try {
			$url = $this->plugin->admin()->handle_retry();
		} finally {
			unset( $_REQUEST['_wpnonce'] );
			wp_set_current_user( 0 );
		}
		$this->assertStringContainsString( 'postbag_uploaded=1', $url );
		$this->assertArrayHasKey( "jobs/$job_id/manifest.json", $this->s3->objects, 'the backoff is ignored' );
	}

	public function test_uninstall_removes_jobs_and_deactivation_keeps_them(): void {
		$job_id = postbag_notify( self::valid() );
		Postbag_Plugin::deactivate();
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->ids() );
		Postbag_Plugin::uninstall( $this->plugin->spool() );
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->ids(), 'kept: nobody chose to discard it' );
		update_site_option( Postbag_Admin::DISCARD_SPOOL_OPTION, '1' );
		Postbag_Plugin::uninstall( $this->plugin->spool() );
		$this->assertDirectoryDoesNotExist( $this->spool_dir );
	}

	/** The notices an administrator sees. */
	private function admin_notices(): string {
		wp_set_current_user( 1 );
		try {
			return $this->plugin->admin()->notices();
		} finally {
			wp_set_current_user( 0 );
		}
	}
}
