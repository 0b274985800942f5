<?php
/**
 * The contract of notify jobs: what the plugin uploads, the sender reads.
 *
 * @package Postbag\Tests
 */

/**
 * A job streamed into moto's S3 goes through check_job.py: the manifest
 * validated against fixtures/job-v2.schema.json and parsed by the sender's
 * `chalicelib.formats.v2`, each part checked against its manifest entry and
 * read row by row. What comes out must be what WordPress was given, shaped
 * like the committed example job (fixtures/jobs/new-post/), which passes the
 * same script.
 */
final class Postbag_JobContractTest extends Postbag_Test_Live_Case {

	/** The committed example job. */
	const FIXTURE = 'fixtures/jobs/new-post/jobs/7d3f0c2a-9b1e-4f5a-8c6d-2e4b1a0f9c01/';

	/** The sender's settings (tests/conftest.py allows the same). */
	const SENDER_ENV = array( 'POSTBAG_ALLOWED_SENDERS' => 'example.org' );

	/** Rows: more than a part holds, with names, user ids and vars of every kind. */
	private static function rows(): array {
		$rows = array(
			array(
				'email'   => 'zoe@example.net',
				'name'    => 'Zoë Durand',
				'user_id' => 12,
				'vars'    => array(
					'new_followers' => array( 'Ana', 'Bo' ),
					'since'         => array(),
					'score'         => 1.5,
				),
			),
			array( 'email' => 'chen@example.net', 'name' => '陈伟 "the <boss>"' ),
			array( 'email' => 'slash/quote\'s@example.net' ),
		);
		for ( $n = 0; $n < 10050; $n++ ) {
			$rows[] = array(
				'email'   => "reader$n@example.net",
				'user_id' => $n + 100,
			);
		}
		return $rows;
	}

	public function test_the_sender_reads_every_recipient_of_a_plugin_job_as_given(): void {
		$this->switch_to( $this->plugin_for( self::$aws->endpoint, null, array( 'inline_attachment_max_bytes' => 100 ) ) );
		// Served over https, as a site must be for a job to carry its list and unsubscribe links.
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return set_url_scheme( $url, 'https' );
			}
		);
		$report = random_bytes( 1000 );
		$rows   = self::rows();
		$job_id = postbag_notify(
			array(
				'recipients'  => $rows,
				'subject'     => 'New post: {{ post.title }}',
				'html'        => "<p>Hi {{ recipient.name or 'there' }},</p><p><a href=\"{{ post.url }}\">{{ post.title }}</a> is out.</p>{% if new_followers %}<p>{{ new_followers | join(', ') }}</p>{% endif %}",
				'text'        => "Hi {{ recipient.name or 'there' }},\n\n{{ post.title }} is out: {{ post.url }}\n",
				'context'     => array(
					'post'  => array(
						'title' => 'Café culture & <tags>',
						'url'   => 'https://blog.example.org/?p=42',
					),
					'empty' => new stdClass(),
				),
				'list'        => 'new-posts',
				'from'        => 'Blog <news@example.org>',
				'reply_to'    => array( 'Editors <editors@example.org>' ),
				'headers'     => array( 'X-Postbag-Campaign' => 'new-post 42' ),
				'attachments' => array( 'Report.pdf' => self::file( 'report.pdf', $report ) ),
			)
		);
		$this->assertIsString( $job_id );
		$this->assertSame( array( $job_id ), $this->plugin->jobs()->stream_pending()['uploaded'] );

		$checked = $this->check( "jobs/$job_id/manifest.json", $this->objects( "jobs/$job_id/" ) );

		$this->assertArrayNotHasKey( 'refused', $checked, $checked['refused'] ?? '' );
		$this->assertSame( array(), $checked['schema_errors'] );
		$this->assertSame( array(), $checked['bad'] );
		$this->assertSame( $job_id, $checked['job_id'] );
		$this->assertSame( array( 'Blog', 'news@example.org' ), $checked['from'] );
		$this->assertSame( array( array( 'Editors', 'editors@example.org' ) ), $checked['reply_to'] );
		$this->assertSame( array( array( 'X-Postbag-Campaign', 'new-post 42' ) ), $checked['headers'] );
		$this->assertSame( Postbag_List_Unsubscribe::site_list( 'new-posts' ), $checked['list'], 'this site\'s list' );
		$this->assertSame( 'Café culture & <tags>', $checked['context']['post']['title'] );
		$this->assertSame( array(), $checked['context']['empty'] );
		$this->assertSame( "Hi {{ recipient.name or 'there' }},\n\n{{ post.title }} is out: {{ post.url }}\n", $checked['template']['text'] );
		$this->assertSame( $this->fixture_keys(), $checked['keys'], 'the manifest has the fields of the committed example' );
		$key = "queue/attachments/$job_id/job/0";
		$this->assertSame( array( array( 'filename' => 'Report.pdf', 'content_type' => 'application/pdf', 's3_key' => $key ) ), $checked['attachments'] );
		$this->assertSame( $report, $this->objects( $key )[ $key ]['body'], 'a large attachment is in the bucket with its job' );

		$this->assertCount( count( $rows ), $checked['recipients'] );
		foreach ( $rows as $i => $row ) {
			$got = $checked['recipients'][ $i ];
			$this->assertSame( $row['email'], $got['email'] );
			$this->assertSame( $row['name'] ?? '', $got['name'] );
			$this->assertSame( $row['user_id'] ?? null, $got['user_id'] );
			$query = array();
			parse_str( (string) wp_parse_url( $got['unsubscribe_url'], PHP_URL_QUERY ), $query );
			$this->assertNull( $this->plugin->lists()->tokens()->problem( $query['list'] ?? null, $query['address'] ?? null, $query['expires'] ?? null, $query['signature'] ?? null ), 'the sender reads a link that verifies for ' . $row['email'] );
			$this->assertSame( array( $checked['list'], strtolower( $row['email'] ) ), array( $query['list'], $query['address'] ) );
			if ( isset( $row['vars'] ) ) {
				$this->assertSame( array( 'new_followers', 'since', 'score' ), array_keys( $got['vars'] ) );
				$this->assertSame( 1.5, $got['vars']['score'] );
			}
		}
	}

	/**
	 * @return array<string, array{0: string, 1: array}>
	 */
	public function schedules(): array {
		$day = gmdate( 'Y-m-d', time() + 3 * DAY_IN_SECONDS );
		return array(
			'send_at'      => array( 'send_at', array( 'send_at' => "{$day}T08:00:00Z" ) ),
			'send_between' => array( 'send_between', array( 'send_between' => array( "{$day}T08:00:00Z", "{$day}T18:00:00Z" ) ) ),
		);
	}

	/**
	 * @dataProvider schedules
	 *
	 * @param string $field    The field set.
	 * @param array  $schedule postbag_notify() arguments.
	 */
	public function test_the_sender_reads_a_scheduled_job_s_time( string $field, array $schedule ): void {
		$job_id = postbag_notify(
			$schedule + array(
				'recipients' => array( array( 'email' => 'zoe@example.net' ) ),
				'subject'    => 'Digest',
				'html'       => '<p>This week</p>',
				'from'       => 'news@example.org',
			)
		);
		$this->assertIsString( $job_id );
		$this->plugin->jobs()->stream_pending();

		$checked = $this->check( "jobs/$job_id/manifest.json", $this->objects( "jobs/$job_id/" ) );

		$this->assertArrayNotHasKey( 'refused', $checked, $checked['refused'] ?? '' );
		$this->assertSame( array(), $checked['schema_errors'] );
		$day = substr( (string) ( $schedule['send_at'] ?? $schedule['send_between'][0] ), 0, 10 );
		$this->assertSame(
			'send_at' === $field ? array( "{$day}T08:00:00+00:00", null ) : array( null, array( "{$day}T08:00:00+00:00", "{$day}T18:00:00+00:00" ) ),
			array( $checked['send_at'], $checked['send_between'] ),
			'the sender reads the instant WordPress stored'
		);
	}

	public function test_the_committed_example_job_passes_the_same_checks(): void {
		$root    = Postbag_Test_Python::repo_root() . '/' . self::FIXTURE;
		$objects = array();
		foreach ( array( 'manifest.json', 'part-00001.ndjson.gz', 'part-00002.ndjson.gz' ) as $name ) {
			$objects[ 'jobs/7d3f0c2a-9b1e-4f5a-8c6d-2e4b1a0f9c01/' . $name ] = array( 'body' => (string) file_get_contents( $root . $name ) );
		}
		$checked = $this->check( 'jobs/7d3f0c2a-9b1e-4f5a-8c6d-2e4b1a0f9c01/manifest.json', $objects );
		$this->assertArrayNotHasKey( 'refused', $checked, $checked['refused'] ?? '' );
		$this->assertSame( array(), $checked['schema_errors'] );
		$this->assertCount( 5, $checked['recipients'] );
	}

	/**
	 * The top-level fields of the committed manifest.
	 *
	 * @return string[]
	 */
	private function fixture_keys(): array {
		$keys = array_keys( json_decode( (string) file_get_contents( Postbag_Test_Python::repo_root() . '/' . self::FIXTURE . 'manifest.json' ), true ) );
		sort( $keys );
		return $keys;
	}

	/**
	 * @param string                             $manifest_key The manifest's key.
	 * @param array<string, array{body: string}> $objects      Key => object.
	 * @return array What check_job.py reports.
	 */
	private function check( string $manifest_key, array $objects ): array {
		return Postbag_Test_Python::run(
			array( __DIR__ . '/check_job.py' ),
			self::SENDER_ENV,
			json_encode(
				array(
					'manifest_key' => $manifest_key,
					'objects'      => array_map(
						static function ( array $object ): string {
							return base64_encode( $object['body'] );
						},
						$objects
					),
				),
				JSON_THROW_ON_ERROR
			)
		);
	}
}
