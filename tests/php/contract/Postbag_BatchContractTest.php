<?php
/**
 * The contract between the halves: what the plugin uploads, the sender reads.
 *
 * @package Postbag\Tests
 */

/**
 * Batches the plugin wrote to moto's S3 go through the sender's own parser
 * and MIME builder (check_batch.py), and through the whole Lambda handler
 * under moto (deliver_batches.py); the mail that comes out must be the one
 * WordPress was asked to send. One such batch is kept in
 * fixtures/batches/from-plugin.json for the Python tests.
 */
final class Postbag_BatchContractTest extends Postbag_Test_Live_Case {

	const FIXTURE = 'fixtures/batches/from-plugin.json';

	/** The sender's settings for these batches (tests/conftest.py allows the same). */
	const SENDER_ENV = array( 'POSTBAG_ALLOWED_SENDERS' => 'example.org' );

	public function test_sender_accepts_plugin_batches_and_builds_the_mail_wordpress_was_asked_for(): void {
		$expected = $this->queue_fixture_mails();
		$report   = random_bytes( 300 * 1024 );
		$this->assertTrue(
			wp_mail(
				array( 'Åsa Berg <asa@example.net>', self::MARKER ),
				'Quarterly report — Q4 ✓',
				'<h1>Report</h1><p>Attached, as promised.</p>',
				self::headers(),
				array( self::file( 'report.pdf', $report ) )
			)
		);
		$expected['Quarterly report — Q4 ✓'] = array(
			'to'          => array( 'asa@example.net' ),
			'text'        => "Report\n\nAttached, as promised.\n",
			'attachments' => array( array( 'report.pdf', 'application/pdf', $report ) ),
		);

		$this->assertCount( 1, $this->flush_uploaded() );
		$objects = $this->objects();
		$checked = $this->check( $objects );

		$this->assertCount( 1, $checked, 'one batch: every mail shares its meta' );
		$result = reset( $checked );
		$this->assertArrayNotHasKey( 'refused', $result, $result['refused'] ?? '' );
		$this->assertSame( array(), $result['rejected'] );
		$this->assertSame( array( 'archive@example.org' ), $result['bcc'] );
		$this->assertCount( count( $expected ), $result['mails'] );
		foreach ( $result['mails'] as $mail_id => $mail ) {
			$this->assertArrayHasKey( $mail['subject'], $expected, "mail $mail_id: subject decoded from the MIME header" );
			$want = $expected[ $mail['subject'] ];
			$this->assertSame( array( 'news@example.org' ), $mail['from'] );
			$this->assertSame( $want['to'], $mail['to'], 'the marker address never reaches the sender' );
			$this->assertSame( array( 'editors@example.org' ), $mail['cc'] );
			$this->assertSame( array( 'editors@example.org' ), $mail['reply_to'] );
			$this->assertStringContainsString( '=?utf-8?', $mail['raw_subject'], 'a non-ASCII subject is RFC 2047 encoded' );
			$this->assertTrue( $mail['ascii_only'], 'the raw message is 7-bit' );
			$this->assertLessThanOrEqual( 998, $mail['max_line'] );
			$this->assertSame( $want['text'], $mail['text'] );
			$this->assertSame(
				array_map(
					static function ( array $file ): array {
						return array(
							'filename'     => $file[0],
							'content_type' => $file[1],
							'sha256'       => hash( 'sha256', $file[2] ),
							'size'         => strlen( $file[2] ),
						);
					},
					$want['attachments']
				),
				$mail['attachments'],
				'attachment bytes survive the round trip'
			);
			unset( $expected[ $mail['subject'] ] );
		}
	}

	public function test_the_sender_accepts_a_scheduled_batch(): void {
		$send_at = gmdate( 'Y-m-d\TH:i:s\Z', time() + DAY_IN_SECONDS );
		$this->assertTrue( wp_mail( array( 'asa@example.net', self::MARKER ), 'Digest', '<p>This week.</p>', array( "X-Postbag-Send-At: $send_at" ) ) );

		$this->assertCount( 1, $this->flush_uploaded() );
		$objects = $this->objects();
		$this->assertSame( $send_at, json_decode( reset( $objects )['body'], true )['send_at'] );
		$result = $this->check( $objects );
		$result = reset( $result );
		$this->assertArrayNotHasKey( 'refused', $result, $result['refused'] ?? '' );
		$this->assertCount( 1, $result['mails'] );
	}

	public function test_the_sender_accepts_a_list_mail_and_sends_the_headers_the_plugin_computed(): void {
		add_filter(
			'rest_url',
			static function ( string $url ): string {
				return set_url_scheme( $url, 'https' ); // Links are https only.
			}
		);
		$this->assertTrue( wp_mail( array( 'Åsa <asa@example.net>', self::MARKER ), 'Digest', '<p>This week.</p>', array( 'X-Postbag-List: weekly', 'Content-Type: text/html' ) ) );

		$this->assertCount( 1, $this->flush_uploaded() );
		$objects = $this->objects();
		$batch   = json_decode( reset( $objects )['body'], true );
		$this->assertSame( Postbag_List_Unsubscribe::site_list( 'weekly' ), $batch['meta']['list'] );
		$result = $this->check( $objects );
		$result = reset( $result );
		$this->assertArrayNotHasKey( 'refused', $result, $result['refused'] ?? '' );
		$this->assertSame( array(), $result['rejected'] );
		$this->assertCount( 1, $result['mails'] );
		$mail = reset( $result['mails'] );
		$this->assertSame( 'List-Unsubscribe=One-Click', $mail['list_unsubscribe_post'] );
		$this->assertMatchesRegularExpression( '/^<https:\/\/blog\.example\.org\/[^<>, ]+>$/', $mail['list_unsubscribe'], 'one https URI, as sent' );
		$this->assertSame( array_column( $batch['meta']['headers'], 'value', 'name' )['List-Unsubscribe'], $mail['list_unsubscribe'], 'the header the plugin computed, unchanged' );
	}

	public function test_the_sender_lambda_sends_each_plugin_mail_once_even_when_the_event_comes_twice(): void {
		$expected = $this->queue_fixture_mails();
		$report   = random_bytes( 300 * 1024 );
		$this->assertTrue( wp_mail( array( 'asa@example.net', self::MARKER ), 'Report', '<p>Attached.</p>', self::headers(), array( self::file( 'report.pdf', $report ) ) ) );
		$expected['Report'] = array(
			'to'          => array( 'asa@example.net' ),
			'attachments' => array( array( 'report.pdf', 'application/pdf', $report ) ),
		);
		$uploaded = $this->flush_uploaded();
		$this->assertCount( 1, $uploaded );
		$batch_id = $uploaded[0];
		$objects  = $this->objects();
		$mail_ids = array_column( self::batches( $objects )[ "queue/$batch_id.json" ]['emails'], 'id' );

		$delivered = $this->deliver( $objects );

		// Custom headers with attachments need MIME; without, SES v2's Simple content carries them.
		foreach ( $delivered['sent'] as $sent ) {
			$this->assertSame( empty( $expected[ $sent['subject'] ]['attachments'] ) ? 'SendEmail' : 'SendRawEmail', $sent['api'], $sent['subject'] );
		}
		$subjects = array_column( $delivered['sent'], 'subject' );
		sort( $subjects );
		$want = array_keys( $expected );
		sort( $want );
		$this->assertSame( $want, $subjects, 'SES got each mail once, though the event came twice' );
		foreach ( $delivered['sent'] as $message ) {
			$this->assertSame( $expected[ $message['subject'] ]['to'], $message['to'] );
			$digests = array();
			foreach ( $expected[ $message['subject'] ]['attachments'] as $file ) {
				$digests[ $file[0] ] = hash( 'sha256', $file[2] );
			}
			$this->assertSame( $digests, $message['attachments'], 'attachments, the one read from the bucket included' );
		}

		list( $first, $replay ) = $delivered['receipts'];
		$receipt                = $first[ "receipts/$batch_id.json" ] ?? array();
		$this->assertSame( $mail_ids, array_column( $receipt['mails'] ?? array(), 'mail_id' ), 'the receipt names the ids the plugin minted' );
		$this->assertSame( array( 'sent' ), array_values( array_unique( array_column( $receipt['mails'], 'status' ) ) ) );
		$again = $replay[ "receipts/$batch_id.json" ]['mails'];
		$this->assertSame( array( 'duplicate' ), array_values( array_unique( array_column( $again, 'status' ) ) ) );
		$this->assertSame( array_column( $receipt['mails'], 'message_id' ), array_column( $again, 'message_id' ) );
	}

	public function test_a_mail_to_a_bcc_list_reaches_every_follower(): void {
		$followers = array( 'ann@example.net', 'ben@example.net', 'cem@example.net' );
		$this->assertTrue(
			wp_mail(
				self::MARKER,
				'New post for followers',
				'A new post is up.',
				array_merge( array( 'From: Blog News <news@example.org>' ), preg_filter( '/^/', 'Bcc: ', $followers ) )
			)
		);
		$this->assertCount( 1, $this->flush_uploaded() );
		$objects = $this->objects();
		$batches = self::batches( $objects );
		$batch   = reset( $batches );
		$this->assertSame( array(), $batch['emails'][0]['to'], 'only the marker was in To' );
		$this->assertSame( $followers, $batch['meta']['bcc'] );

		$delivered = $this->deliver( $objects );

		$this->assertCount( 1, $delivered['sent'] );
		$this->assertSame( 'SendEmail', $delivered['sent'][0]['api'] );
		$this->assertSame( $followers, $delivered['sent'][0]['destinations'] );
		$this->assertSame( array(), $delivered['sent'][0]['to'] );
		$this->assertSame( array( 'sent' ), array_column( $delivered['receipts'][0][ 'receipts/' . $batch['batch_id'] . '.json' ]['mails'], 'status' ) );
	}

	public function test_committed_fixture_is_what_the_plugin_writes_today(): void {
		$this->queue_fixture_mails();
		$this->assertCount( 1, $this->flush_uploaded() );
		$objects = $this->objects();
		$batches = self::batches( $objects );
		$this->assertCount( 1, $batches );
		$this->assertCount( 1, $objects, 'the fixture holds inline attachments only' );
		$batch = reset( $batches );

		$path      = Postbag_Test_Python::repo_root() . '/' . self::FIXTURE;
		$committed = is_file( $path ) ? json_decode( (string) file_get_contents( $path ), true ) : null;
		if ( ! is_array( $committed ) || self::normalized( $committed ) !== self::normalized( $batch ) ) {
			file_put_contents( $path, self::pretty_json( $batch ) );
			$this->fail( self::FIXTURE . ' no longer matches what the plugin writes; it has been regenerated: review the diff and commit it.' );
		}

		// And the committed file itself is a batch the sender takes without complaint.
		$checked = $this->check( array( self::FIXTURE => array( 'body' => (string) file_get_contents( $path ) ) ) )[ self::FIXTURE ];
		$this->assertArrayNotHasKey( 'refused', $checked, $checked['refused'] ?? '' );
		$this->assertSame( array(), $checked['rejected'] );
		$this->assertCount( 2, $checked['mails'] );
	}

	/**
	 * The fixture's two mails (same meta, so one batch), and what each should become.
	 *
	 * @return array<string, array{to: string[], text: string, attachments: array[]}> By subject.
	 */
	private function queue_fixture_mails(): array {
		$root  = Postbag_Test_Python::repo_root() . '/fixtures/attachments/';
		$pixel = $root . 'pixel.png';
		$notes = $root . 'notes.txt';
		$this->assertTrue(
			wp_mail(
				array( 'Zoë Example <zoe@example.net>', self::MARKER ),
				'Neuer Beitrag: Grüße aus Köln',
				'<p>Hallo Zoë,</p><p>ein <a href="https://blog.example.org/koeln">neuer Beitrag</a> ist da.</p>',
				self::headers(),
				array( $pixel, 'Notizen.txt' => $notes )
			)
		);
		$this->assertTrue( wp_mail( array( self::MARKER, 'emile@example.net', 'Dana <dana@example.net>' ), 'Café ☕ digest', '<p>Two readers, one mail.</p>', self::headers() ) );
		return array(
			'Neuer Beitrag: Grüße aus Köln' => array(
				'to'          => array( 'zoe@example.net' ),
				'text'        => "Hallo Zoë,\n\nein neuer Beitrag (https://blog.example.org/koeln) ist da.\n",
				'attachments' => array(
					array( 'pixel.png', 'image/png', (string) file_get_contents( $pixel ) ),
					array( 'Notizen.txt', 'text/plain', (string) file_get_contents( $notes ) ),
				),
			),
			'Café ☕ digest'                => array(
				'to'          => array( 'emile@example.net', 'dana@example.net' ),
				'text'        => "Two readers, one mail.\n",
				'attachments' => array(),
			),
		);
	}

	/** Headers every contract mail shares (string form, as many plugins pass them). */
	private static function headers(): string {
		return "From: Blog News <news@example.org>\r\nContent-Type: text/html; charset=UTF-8\r\nCc: Editors <editors@example.org>\r\nBcc: archive@example.org\r\nReply-To: Editors <editors@example.org>\r\nList-Unsubscribe: <https://blog.example.org/unsubscribe>\r\n";
	}

	/**
	 * Runs the sender's stages over the batch files among `$objects`.
	 *
	 * @param array<string, array{body: string}> $objects Key => object (batches and attachments).
	 * @return array<string, array> Key => what check_batch.py reports.
	 */
	private function check( array $objects ): array {
		$request = array(
			'batches'     => array(),
			'attachments' => array(),
		);
		foreach ( $objects as $key => $object ) {
			if ( '.json' === substr( $key, -5 ) ) {
				$request['batches'][ $key ] = $object['body'];
			} else {
				$request['attachments'][ $key ] = base64_encode( $object['body'] );
			}
		}
		return Postbag_Test_Python::run(
			array( __DIR__ . '/check_batch.py' ),
			self::SENDER_ENV,
			json_encode( array_map( 'Postbag_BatchContractTest::as_object', $request ), JSON_THROW_ON_ERROR )
		);
	}

	/** An empty map stays a JSON object. */
	public static function as_object( array $map ): object {
		return (object) $map;
	}

	/**
	 * Runs the sender's Lambda handler over `$objects` (deliver_batches.py).
	 *
	 * @param array<string, array{body: string}> $objects Key => object, as uploaded.
	 * @return array{sent: array[], receipts: array[]}
	 */
	private function deliver( array $objects ): array {
		return Postbag_Test_Python::run(
			array( __DIR__ . '/deliver_batches.py' ),
			array(),
			json_encode(
				array(
					'objects' => array_map(
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

	/** A batch without what changes on every run (ids, time). */
	private static function normalized( array $batch ): array {
		$ids                 = array( $batch['batch_id'] => '<batch_id>' );
		$batch['created_at'] = '<created_at>';
		foreach ( $batch['emails'] ?? array() as $i => $mail ) {
			$ids[ $mail['id'] ] = "<mail_id $i>";
		}
		array_walk_recursive(
			$batch,
			static function ( &$value ) use ( $ids ): void {
				if ( is_string( $value ) ) {
					$value = strtr( $value, $ids );
				}
			}
		);
		return $batch;
	}

	/** JSON laid out like the other fixtures (two-space indent, UTF-8 as is). */
	private static function pretty_json( array $batch ): string {
		$json = json_encode( $batch, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR );
		return preg_replace_callback(
			'/^( +)/m',
			static function ( array $indent ): string {
				return str_repeat( ' ', intdiv( strlen( $indent[1] ), 2 ) );
			},
			$json
		) . "\n";
	}
}
