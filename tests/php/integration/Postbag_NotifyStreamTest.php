<?php
/**
 * A notify job to 20,000 users of a real WordPress, streamed into moto's S3.
 *
 * @package Postbag\Tests
 */

/**
 * 20,000 subscribers and 500 editors are inserted once (multi-row INSERTs,
 * a second or so). A job to the subscribers is streamed by keyset pages into
 * parts and uploaded with its manifest: every subscriber exactly once, no
 * editor, no SQL with OFFSET; in a php-cli request under memory_limit=64M;
 * paused by its deadline and continued by WP-Cron; through an S3 outage; and
 * through a PHP-FPM worker killed in the middle of it.
 */
final class Postbag_NotifyStreamTest extends Postbag_Test_Live_Case {

	const SUBSCRIBERS = 20000;

	const EDITORS = 500;

	/** @var int The first user id this class inserted. */
	private static $first_id = 0;

	/** @var string[] Every subscriber's address, sorted. */
	private static $subscribers = array();

	/** @var array<string, array[]> Job actions fired: name => argument lists. */
	private $job_events = array();

	public static function setUpBeforeClass(): void {
		parent::setUpBeforeClass();
		self::insert_users();
	}

	public static function tearDownAfterClass(): void {
		global $wpdb;
		$wpdb->query( $wpdb->prepare( "DELETE FROM {$wpdb->users} WHERE ID >= %d", self::$first_id ) );
		$wpdb->query( $wpdb->prepare( "DELETE FROM {$wpdb->usermeta} WHERE user_id >= %d", self::$first_id ) );
		parent::tearDownAfterClass();
	}

	protected function setUp(): void {
		parent::setUp();
		foreach ( array( 'postbag_job_uploaded', 'postbag_job_spooled', 'postbag_job_failed' ) as $action ) {
			add_action(
				$action,
				function ( ...$args ) use ( $action ): void {
					$this->job_events[ $action ][] = $args;
				},
				10,
				3
			);
		}
	}

	/**
	 * Subscribers interleaved with editors (every 41st user), so a page of
	 * the role filter skips users; names with non-ASCII letters.
	 */
	private static function insert_users(): void {
		global $wpdb;
		self::$first_id = (int) $wpdb->get_var( "SELECT COALESCE( MAX( ID ), 0 ) FROM {$wpdb->users}" ) + 1000;
		$caps           = $wpdb->get_blog_prefix() . 'capabilities';
		$total          = self::SUBSCRIBERS + self::EDITORS;
		$editors        = 0;
		for ( $start = 0; $start < $total; $start += 2000 ) {
			$users = array();
			$meta  = array();
			for ( $n = $start; $n < min( $total, $start + 2000 ); $n++ ) {
				$id     = self::$first_id + $n;
				$editor = 0 === $n % 41 && $editors < self::EDITORS;
				$editors += (int) $editor;
				$email  = ( $editor ? 'editor' : 'sub' ) . "$n@example.net";
				if ( ! $editor ) {
					self::$subscribers[] = $email;
				}
				$users[] = $wpdb->prepare( '(%d, %s, %s, %s, %s, %s, %s)', $id, "user$n", '', "user$n", $email, "Zoë Reader $n", '2026-11-29 00:00:00' );
				$meta[]  = $wpdb->prepare( '(%d, %s, %s)', $id, $caps, serialize( array( $editor ? 'postbag_editor' : 'postbag_reader' => true ) ) );
			}
			$wpdb->query( "INSERT INTO {$wpdb->users} (ID, user_login, user_pass, user_nicename, user_email, display_name, user_registered) VALUES " . implode( ',', $users ) ); // phpcs:ignore WordPress.DB.PreparedSQL -- each row prepared above.
			$wpdb->query( "INSERT INTO {$wpdb->usermeta} (user_id, meta_key, meta_value) VALUES " . implode( ',', $meta ) ); // phpcs:ignore WordPress.DB.PreparedSQL
		}
		// Roles of their own, so users other tests make never match.
		sort( self::$subscribers );
	}

	/** A job to every subscriber. */
	private static function notify_subscribers(): string {
		$job_id = postbag_notify(
			array(
				'recipients' => array( 'user_query' => array( 'role' => 'postbag_reader' ) ),
				'subject'    => 'New post: {{ post.title }}',
				'html'       => '<p>Hi {{ recipient.name }}, {{ post.title }} is out.</p>',
				'context'    => array( 'post' => array( 'title' => 'Hello' ) ),
				'from'       => 'Blog <news@example.org>',
				'list'       => 'new-posts',
			)
		);
		if ( is_wp_error( $job_id ) ) {
			throw new RuntimeException( $job_id->get_error_message() );
		}
		return $job_id;
	}

	/**
	 * The job as the bucket holds it: the manifest, and every row's address in
	 * part order (each part's size and checksum checked against the manifest).
	 *
	 * @return array{0: array, 1: string[]}
	 */
	private function job_in_bucket( string $job_id ): array {
		$objects = $this->objects( "jobs/$job_id/" );
		$this->assertArrayHasKey( "jobs/$job_id/manifest.json", $objects, 'the manifest is in the bucket' );
		$manifest = json_decode( $objects[ "jobs/$job_id/manifest.json" ]['body'], true, 512, JSON_THROW_ON_ERROR );
		$this->assertCount( count( $manifest['parts'] ) + 1, $objects, 'the manifest and its parts, nothing else' );
		$emails = array();
		foreach ( $manifest['parts'] as $part ) {
			$body = $objects[ $part['key'] ]['body'];
			$this->assertSame( 'application/x-ndjson', $objects[ $part['key'] ]['content_type'] );
			$this->assertSame( $part['bytes'], strlen( $body ) );
			$this->assertSame( $part['sha256'], hash( 'sha256', $body ) );
			$lines = explode( "\n", rtrim( gzdecode( $body ), "\n" ) );
			$this->assertCount( $part['rows'], $lines );
			foreach ( $lines as $line ) {
				$emails[] = json_decode( $line, true, 512, JSON_THROW_ON_ERROR )['email'];
			}
		}
		$this->assertSame( count( $emails ), $manifest['recipients'] );
		return array( $manifest, $emails );
	}

	/**
	 * Every subscriber exactly once, no editor.
	 *
	 * @param string[] $emails Addresses in the job's parts.
	 */
	private function assert_every_subscriber_once( array $emails ): void {
		$this->assertSame( count( $emails ), count( array_unique( $emails ) ), 'no recipient twice' );
		sort( $emails );
		$this->assertSame( self::$subscribers, $emails, 'every subscriber, no editor' );
	}

	public function test_the_subscribers_are_streamed_after_the_response_by_keyset_never_offset(): void {
		$queries = array();
		add_filter(
			'query',
			static function ( string $sql ) use ( &$queries ): string {
				$queries[] = $sql;
				return $sql;
			}
		);
		$job_id = self::notify_subscribers();
		$this->assertSame( array(), array_filter( $queries, array( self::class, 'reads_users' ) ), 'the call reads no user' );
		$this->assertSame( array(), $this->objects( 'jobs/' ), 'the call uploads nothing' );

		$this->plugin->flusher()->on_shutdown(); // What shutdown runs after the response.

		list( $manifest, $emails ) = $this->job_in_bucket( $job_id );
		$this->assert_every_subscriber_once( $emails );
		$this->assertSame( array( 10000, 10000 ), array_column( $manifest['parts'], 'rows' ) );
		$this->assertSame( 'Zoë Reader 1', json_decode( explode( "\n", gzdecode( $this->objects( $manifest['parts'][0]['key'] )[ $manifest['parts'][0]['key'] ]['body'] ) )[0], true )['name'] );
		$this->assertSame( array( array( $job_id, self::SUBSCRIBERS, 0 ) ), $this->job_events['postbag_job_uploaded'] );

		$pages = array_values( array_filter( $queries, array( self::class, 'reads_users' ) ) );
		$this->assertCount( 3, $pages, 'two full pages and the empty end' );
		foreach ( $pages as $sql ) {
			$this->assertDoesNotMatchRegularExpression( '/\bOFFSET\b|\bLIMIT\s+\d+\s*,/i', $sql, 'never OFFSET' );
			$this->assertMatchesRegularExpression( '/\.ID > \d+\s.*ORDER BY \S+\.ID ASC\s+LIMIT 10000\s*$/s', $sql );
			$this->assertStringNotContainsString( 'SQL_CALC_FOUND_ROWS', $sql );
		}
	}

	/**
	 * @param string $sql A query.
	 */
	public static function reads_users( string $sql ): bool {
		global $wpdb;
		return (bool) preg_match( '/^\s*SELECT\s.*\sFROM\s+' . preg_quote( $wpdb->users, '/' ) . '\b/s', $sql );
	}

	public function test_a_request_under_a_64_mb_memory_limit_streams_them_all(): void {
		$constants = Postbag_Test_Local_Aws::site_constants( self::$aws->endpoint, $this->bucket, $this->spool_dir );
		$log     = Postbag_Test_WordPress::$sandbox->path( 'stream-notify-' . bin2hex( random_bytes( 4 ) ) . '.log' );
		$request = new Postbag_Test_Process(
			array( PHP_BINARY, '-d', 'memory_limit=64M', '-d', 'display_errors=stderr', __DIR__ . '/requests/stream-notify-job.php', Postbag_Test_WordPress::$sandbox->path( 'wp-config.php' ), json_encode( $constants ), 'postbag_reader' ),
			$log,
			array( 'PATH' => (string) getenv( 'PATH' ) ),
			true
		);
		$line   = $request->read_line( 120 );
		$status = $request->wait( 30 );
		$report = json_decode( (string) $line, true );
		$this->assertSame( 0, $status, $line . file_get_contents( $log ) );
		$this->assertSame( '64M', $report['memory_limit'] );
		$this->assertSame( array( $report['job_id'] ), $report['summary']['uploaded'] );
		$this->assertSame( self::SUBSCRIBERS, $report['summary']['rows'] );
		$this->assertLessThan( 64 * 1024 * 1024, $report['peak_real_bytes'] );
		// What streaming adds to the request: a page of users and a part's buffers, whatever N.
		$this->assertLessThan( 12 * 1024 * 1024, $report['peak_bytes'] - $report['base_bytes'], sprintf( '%.1f MB', ( $report['peak_bytes'] - $report['base_bytes'] ) / 1048576 ) );

		list( , $emails ) = $this->job_in_bucket( $report['job_id'] );
		$this->assert_every_subscriber_once( $emails );
		$this->assertSame( array(), glob( $this->spool_dir . '/*.php' ) ? array_diff( array_map( 'basename', glob( $this->spool_dir . '/*.php' ) ), array( 'index.php' ) ) : array(), 'the spool holds nothing of the job' );
	}

	public function test_a_job_paused_at_its_deadline_is_continued_by_cron_exactly(): void {
		$job_id = self::notify_subscribers();
		// A spent budget: one page, the least a worker streams.
		$summary = $this->plugin->jobs()->stream_pending( microtime( true ) - 1 );

		$this->assertSame( array( $job_id ), $summary['paused'] );
		$this->assertSame( 10000, $summary['rows'], 'one page, at a part boundary' );
		$this->assertSame( array(), $this->objects( 'jobs/' ), 'no manifest, and the parts wait for a wave' );
		wp_cache_flush();
		$event = wp_get_scheduled_event( Postbag_Jobs::HOOK );
		$this->assertNotFalse( $event, 'a continuation is planned' );
		$this->assertLessThanOrEqual( time(), $event->timestamp, 'due at once' );

		$this->run_cron_event_at( $event, $event->timestamp );

		list( $manifest, $emails ) = $this->job_in_bucket( $job_id );
		$this->assert_every_subscriber_once( $emails );
		$this->assertCount( 2, $manifest['parts'] );
	}

	public function test_an_s3_outage_spools_the_job_and_the_spool_retry_uploads_it(): void {
		$this->switch_to( $this->plugin_for( self::closed_endpoint() ) );
		$job_id  = self::notify_subscribers();
		$summary = $this->plugin->jobs()->stream_pending();

		$this->assertSame( array( $job_id ), array_unique( $summary['waiting'] ) );
		$this->assertSame( $job_id, $this->job_events['postbag_job_spooled'][0][0] );
		$this->assertCount( 2, glob( $this->spool_dir . "/$job_id.part-*.php" ), 'both parts wait on disk' );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'no fallback through wp_mail()' );

		wp_cache_flush();
		$event = wp_get_scheduled_event( Postbag_Spool_Retry::HOOK );
		$this->assertNotFalse( $event, 'the spool retry is planned' );
		$this->run_cron_event_at( $event, $event->timestamp );

		list( , $emails ) = $this->job_in_bucket( $job_id );
		$this->assert_every_subscriber_once( $emails );
		$this->assertSame( array(), glob( $this->spool_dir . "/$job_id.*" ) );
	}

	public function test_a_worker_killed_mid_stream_loses_no_recipient_and_writes_none_twice(): void {
		$this->require_php_fpm();
		$blocked = Postbag_Test_WordPress::$sandbox->path( 'blocked-' . bin2hex( random_bytes( 4 ) ) );
		$fpm     = new Postbag_Test_Php_Fpm( Postbag_Test_WordPress::$sandbox );
		try {
			// In the second page: the first part is written and recorded, the second half-written.
			$user_job = $this->kill_mid_stream( $fpm, 'user_query', 'sub15000@example.net', $blocked );
			$progress = json_decode( substr( (string) file_get_contents( $this->spool_dir . "/$user_job.progress.php" ), strlen( Postbag_Spool::GUARD ) ), true );
			$this->assertSame( 'streaming', $progress['status'] );
			$this->assertCount( 1, $progress['parts'], 'the first part is recorded with its cursor' );
			$this->assertNotEmpty( glob( $this->spool_dir . '/.*.tmp.php' ), 'the second part was being written when the worker died' );

			$memory_job = $this->kill_mid_stream( $fpm, 'memory', 'm2@example.net', $blocked );
		} finally {
			$fpm->stop();
		}

		// The continuation the worker planned before answering, as wp-cron.php runs it once due.
		wp_cache_flush();
		$event = wp_get_scheduled_event( Postbag_Jobs::HOOK );
		$this->assertNotFalse( $event, 'the worker planned a continuation before answering' );
		$this->run_cron_event_at( $event, $event->timestamp );

		list( , $emails ) = $this->job_in_bucket( $user_job );
		$this->assert_every_subscriber_once( $emails );

		$this->assertSame( $memory_job, $this->job_events['postbag_job_failed'][0][0] ?? null, 'the job held in the dead worker\'s memory is failed, visibly' );
		$this->assertStringContainsString( 'only a user_query or a callback source survives', $this->job_events['postbag_job_failed'][0][1] );
		$this->assertSame( array(), $this->objects( "jobs/$memory_job/" ), 'no manifest: nobody gets half a job' );
		wp_set_current_user( 1 );
		$notices = $this->plugin->admin()->notices();
		wp_set_current_user( 0 );
		$this->assertStringContainsString( "notify job $memory_job failed", $notices );
	}

	/**
	 * Serves fpm-notify.php, waits until its worker blocks at `$block_at`
	 * after the response, and kills it.
	 *
	 * @return string The job id.
	 */
	private function kill_mid_stream( Postbag_Test_Php_Fpm $fpm, string $source, string $block_at, string $blocked ): string {
		@unlink( $blocked );
		$response       = $fpm->request(
			__DIR__ . '/requests/fpm-notify.php',
			$this->page_params(
				self::$aws->endpoint,
				array(),
				array(
					'POSTBAG_TEST_SOURCE'   => $source,
					'POSTBAG_TEST_BLOCK_AT' => $block_at,
					'POSTBAG_TEST_BLOCKED'  => $blocked,
				)
			),
			60
		);
		list( , $body ) = explode( "\r\n\r\n", $response['stdout'], 2 ) + array( 1 => '' );
		$this->assertMatchesRegularExpression( '/^job [0-9a-f-]{36} by \d+$/', $body, 'page body; php-fpm said: ' . $response['stderr'] . @file_get_contents( $fpm->log ) );
		list( , $job_id, , $worker ) = explode( ' ', $body );
		$deadline                    = microtime( true ) + 30;
		while ( ! is_file( $blocked ) && microtime( true ) < $deadline ) {
			usleep( 20000 );
		}
		$this->assertFileExists( $blocked, 'the worker streamed after answering, up to ' . $block_at );
		posix_kill( (int) $worker, SIGKILL );
		$deadline = microtime( true ) + 10;
		while ( file_exists( "/proc/$worker" ) && false === strpos( (string) @file_get_contents( "/proc/$worker/stat" ), ') Z ' ) && microtime( true ) < $deadline ) {
			usleep( 20000 );
		}
		return $job_id;
	}
}
