<?php
/**
 * Grouping, chunking and the batch files' format.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';
require_once __DIR__ . '/class-postbag-schema-checker.php';

/**
 * @covers Postbag_Queue
 * @covers Postbag_Batch
 */
final class Postbag_QueueTest extends Postbag_Unit_Test_Case {

	private static function schema(): Postbag_Schema_Checker {
		return new Postbag_Schema_Checker( dirname( __DIR__, 3 ) . '/fixtures/batch-v1.schema.json' );
	}

	/**
	 * Queues `$count` marked mails.
	 *
	 * @param int    $count   How many.
	 * @param string $body    Body of each.
	 * @param array  $headers Headers of each.
	 */
	private function send( int $count, string $body = 'Body', array $headers = array() ): void {
		for ( $n = 1; $n <= $count; $n++ ) {
			$this->assertTrue( wp_mail( array( "user$n@example.net", self::MARKER ), "Mail $n", $body, $headers ) );
		}
	}

	public function test_the_checker_accepts_the_fixtures_and_rejects_a_broken_batch(): void {
		foreach ( array( 'plain', 'with-attachments', 'bcc-only' ) as $name ) {
			$this->assertSame( array(), self::schema()->errors( (string) file_get_contents( dirname( __DIR__, 3 ) . "/fixtures/batches/$name.json" ) ), $name );
		}
		$broken = json_encode(
			array(
				'version'    => 2,
				'batch_id'   => 'x',
				'site'       => array( 'url' => 'https://a' ),
				'created_at' => 'yesterday',
				'meta'       => array( 'content_type' => 'text/rtf' ),
				'emails'     => array( array( 'id' => 'm' ) ),
			)
		);
		$errors = self::schema()->errors( $broken );
		foreach ( array( '$.version', '$.created_at', '$.meta: missing from', '$.meta.content_type', '$.emails[0]: missing to' ) as $expected ) {
			$this->assertStringContainsString( $expected, implode( "\n", $errors ) );
		}
	}

	public function test_batches_validate_against_the_schema(): void {
		$pixel = dirname( __DIR__, 3 ) . '/fixtures/attachments/pixel.png';
		wp_mail( array( 'Zoë <zoe@example.net>', self::MARKER ), 'Café', '<p>Hi</p>', array( 'Content-Type: text/html; charset=UTF-8', 'Cc: c@example.net', 'Reply-To: r@example.net', 'X-Campaign: weekly' ), array( $pixel ) );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Plain', "Line 1\nLine \"2\"" );
		$this->use_settings( array( 'inline_attachment_max_bytes' => 10 ) );
		wp_mail( array( 'b@example.net', self::MARKER ), 'Large', 'Body', '', array( 'report.png' => $pixel ) );

		$this->plugin->flush();
		$this->assertNotEmpty( $this->s3->batches() );
		foreach ( $this->s3->objects as $key => $object ) {
			if ( '.json' === substr( $key, -5 ) ) {
				$this->assertSame( array(), self::schema()->errors( $object['body'] ), $key );
				$this->assertSame( 'application/json', $object['content_type'] );
			}
		}
	}

	public function test_batch_envelope(): void {
		$this->send( 1 );

		$this->plugin->flush();
		$key   = array_keys( $this->s3->batches() )[0];
		$batch = $this->s3->batches()[ $key ];
		$this->assertSame( 1, $batch['version'] );
		$this->assertTrue( wp_is_uuid( $batch['batch_id'], 4 ) );
		$this->assertSame( 'queue/' . $batch['batch_id'] . '.json', $key );
		$this->assertSame( '2026-11-22T07:00:00Z', $batch['created_at'] );
		$this->assertSame(
			array(
				'url'     => home_url(),
				'blog_id' => get_current_blog_id(),
			),
			$batch['site']
		);
		$this->assertSame( array( array( $batch['batch_id'], array( $batch['emails'][0]['id'] ) ) ), $this->fired['postbag_batch_uploaded'] );
	}

	public function test_the_fixed_prefix_names_the_keys(): void {
		$this->send( 1 );

		$this->plugin->flush();
		$this->assertStringStartsWith( 'queue/', array_keys( $this->s3->objects )[0] );
	}

	public function test_mails_with_identical_meta_share_a_batch_and_others_do_not(): void {
		$this->send( 3 );
		$this->send( 2, 'Body', array( 'From: Other <other@example.org>' ) );
		$this->send( 1, 'Body', array( 'Bcc: archive@example.org' ) );
		$this->send( 1, 'Body', array( 'X-Campaign: spring' ) );
		$this->send( 1, '<b>x</b>', array( 'Content-Type: text/html' ) );

		$sizes = array_map(
			static function ( array $batch ): int {
				return count( $batch['emails'] );
			},
			$this->flush_batches()
		);
		sort( $sizes );
		$this->assertSame( array( 1, 1, 1, 2, 3 ), $sizes );
	}

	public function test_count_limit_cuts_batches(): void {
		$this->send( 60 );

		$batches = $this->flush_batches();
		$this->assertSame( array( 25, 25, 10 ), array_map( 'count', array_column( $batches, 'emails' ) ) );
		$this->assertSame( 60, count( array_unique( array_merge( ...array_map( static fn( $b ) => array_column( $b['emails'], 'id' ), $batches ) ) ) ) );
		$this->assertSame( 0, $this->plugin->queue()->count() );
	}

	public function test_configured_count_limit(): void {
		$this->use_settings( array( 'chunk_max_mails' => 4 ) );
		$this->send( 9 );

		$this->assertSame( array( 4, 4, 1 ), array_map( 'count', array_column( $this->flush_batches(), 'emails' ) ) );
	}

	public function test_byte_limit_cuts_batches(): void {
		$this->use_settings( array( 'chunk_max_bytes' => 8000 ) );
		$this->send( 20, str_repeat( 'a', 1000 ) );

		$this->plugin->flush();
		$this->assertGreaterThan( 2, count( $this->s3->batches() ) );
		$total = 0;
		foreach ( $this->s3->objects as $object ) {
			$this->assertLessThanOrEqual( 8000, strlen( $object['body'] ) );
			$total += count( json_decode( $object['body'], true )['emails'] );
		}
		$this->assertSame( 20, $total );
	}

	public function test_escaping_that_outgrows_the_estimate_still_respects_the_byte_limit(): void {
		$this->use_settings( array( 'chunk_max_bytes' => 8000 ) );
		// Each control character grows sixfold in JSON (\u0001): the estimate is far too low.
		$this->send( 12, str_repeat( "\x01", 500 ) );

		$this->plugin->flush();
		$total = 0;
		foreach ( $this->s3->objects as $object ) {
			$this->assertLessThanOrEqual( 8000, strlen( $object['body'] ) );
			$total += count( json_decode( $object['body'], true )['emails'] );
		}
		$this->assertSame( 12, $total );
	}

	public function test_one_mail_larger_than_the_limit_still_goes_alone(): void {
		$this->use_settings( array( 'chunk_max_bytes' => 2000 ) );
		$this->send( 1, str_repeat( 'a', 5000 ) );
		$this->send( 1 );

		$this->assertSame( array( 1, 1 ), array_map( 'count', array_column( $this->flush_batches(), 'emails' ) ) );
	}

	public function test_invalid_utf8_does_not_break_the_batch(): void {
		$this->send( 1, "Caf\xC3" );
		$this->send( 1, 'Fine' );

		$batch = $this->flush_batches()[0];
		$this->assertSame( "Caf\u{FFFD}", $batch['emails'][0]['text'] );
		$this->assertSame( 'Fine', $batch['emails'][1]['text'] );
	}

	public function test_each_site_of_a_request_gets_its_own_batches(): void {
		$queue = new Postbag_Queue( 25, 1 << 20 );
		$meta  = array(
			'from'         => 'a@example.org',
			'content_type' => 'text/plain',
			'charset'      => 'UTF-8',
		);
		foreach ( array( 1, 2, 1 ) as $blog_id ) {
			$queue->add(
				array(
					'url'     => "https://site$blog_id.example.org",
					'blog_id' => $blog_id,
				),
				$meta,
				array(
					'id'      => wp_generate_uuid4(),
					'to'      => array( 'z@example.net' ),
					'subject' => 's',
					'text'    => 't',
				),
				array(),
				100
			);
		}

		$batches = array_map(
			static function ( Postbag_Batch $batch ): array {
				return $batch->payload();
			},
			$queue->drain( 0 )
		);
		$this->assertSame( array( 1, 2 ), array_column( array_column( $batches, 'site' ), 'blog_id' ) );
		$this->assertSame( array( 2, 1 ), array_map( 'count', array_column( $batches, 'emails' ) ) );
	}

	public function test_meta_filter_adds_configuration_set_and_tags(): void {
		add_filter(
			'postbag_batch_meta',
			static function ( array $meta ): array {
				$meta['configuration_set'] = 'postbag';
				$meta['tags']              = array( 'source' => 'new-post' );
				return $meta;
			}
		);
		$this->send( 1 );

		$this->plugin->flush();
		$body = array_values( $this->s3->objects )[0]['body'];
		$this->assertSame( array(), self::schema()->errors( $body ) );
		$this->assertSame( array( 'source' => 'new-post' ), json_decode( $body, true )['meta']['tags'] );
	}

	public function test_a_full_queue_asks_to_be_flushed_early(): void {
		$queue   = new Postbag_Queue( 25, 1 << 20, 1000 );
		$drained = array();
		$queue->when_full(
			static function () use ( $queue, &$drained ): void {
				$drained[] = count( $queue->drain( 0 ) );
			}
		);
		$mail = array(
			'id'      => 'm',
			'to'      => array( 'z@example.net' ),
			'subject' => 's',
			'text'    => 't',
		);
		$site = array( 'url' => 'https://a.example.org' );
		$meta = array( 'from' => 'a@example.org' );

		$queue->add( $site, $meta, $mail, array(), 400 );
		$queue->add( $site, $meta, $mail, array(), 400 );
		$this->assertSame( array(), $drained );
		$queue->add( $site, $meta, $mail, array( 0 => str_repeat( 'x', 300 ) ), 100 );

		$this->assertSame( array( 1 ), $drained, 'Large attachments count towards the limit.' );
		$this->assertSame( 0, $queue->count() );
		$queue->add( $site, $meta, $mail, array(), 400 );
		$this->assertSame( array( 1 ), $drained, 'The count starts again after a drain.' );
	}

	public function test_the_plugin_flushes_a_full_queue(): void {
		$this->use_settings( array( 'inline_attachment_max_bytes' => 1024 ) );
		// 7 MB: about as large as an attachment SES takes (10 MB a message after base64).
		$big = $this->temp_file( 'big.bin', str_repeat( 'x', 7000000 ) );

		for ( $n = 1; $n <= 9; $n++ ) {
			$this->assertTrue( wp_mail( array( "u$n@example.net", self::MARKER ), "Mail $n", 'Body', '', array( $big ) ) );
		}
		$this->assertSame( array(), $this->s3->objects );
		$this->assertTrue( wp_mail( array( 'u10@example.net', self::MARKER ), 'Mail 10', 'Body', '', array( $big ) ) );

		$this->assertCount( 1, $this->s3->batches(), 'Over 64 MB held: uploaded without waiting for shutdown.' );
		$this->assertSame( 0, $this->plugin->queue()->count() );
	}
}
