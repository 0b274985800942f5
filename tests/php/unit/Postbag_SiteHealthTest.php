<?php
/**
 * Site Health: the spool, stuck mail, the bucket, delivery, the From and misspelt constants.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Site_Health
 * @covers Postbag_Allowed_Senders
 * @covers Postbag_Bucket_Probe
 * @covers Postbag_From
 */
final class Postbag_SiteHealthTest extends Postbag_Unit_Test_Case {

	/** WordPress's default From on the test site (blog.example.org). */
	const DEFAULT_FROM = 'wordpress@blog.example.org';

	/**
	 * Makes `$address` the default From through the wp_mail_from filter.
	 */
	private static function send_from( string $address ): void {
		add_filter(
			'wp_mail_from',
			static function () use ( $address ): string {
				return $address;
			}
		);
	}

	public function test_both_tests_are_listed(): void {
		$tests = apply_filters( 'site_status_tests', array( 'direct' => array() ) );

		$this->assertSame( 'good', call_user_func( $tests['direct']['postbag_spool']['test'] )['status'] );
		$this->assertSame( 'recommended', call_user_func( $tests['direct']['postbag_sender']['test'] )['status'] );
	}

	public function test_without_the_constant_it_is_a_recommendation(): void {
		$result = $this->plugin->site_health()->sender_result();

		$this->assertSame( 'recommended', $result['status'] );
		$this->assertStringContainsString( 'POSTBAG_ALLOWED_SENDERS', $result['description'] );
	}

	public function test_a_default_from_outside_the_list_is_critical(): void {
		$this->use_settings( array( 'allowed_senders' => 'example.org' ) );

		$result = $this->plugin->site_health()->sender_result();

		$this->assertSame( self::DEFAULT_FROM, $this->plugin->interceptor()->effective_default_from() );
		$this->assertSame( 'critical', $result['status'] );
		$this->assertSame( 'postbag_sender', $result['test'] );
		$this->assertStringContainsString( self::DEFAULT_FROM, $result['label'] );
		$this->assertStringContainsString( 'POSTBAG_ALLOWED_SENDERS (example.org)', $result['description'] );
	}

	public function test_the_default_from_after_wp_mail_from_counts(): void {
		$this->use_settings( array( 'allowed_senders' => 'news@example.org, example.net' ) );
		self::send_from( 'News@Example.org' );

		$this->assertSame( 'good', $this->plugin->site_health()->sender_result()['status'] );
	}

	public function test_the_list_is_the_lambdas(): void {
		$senders = new Postbag_Allowed_Senders( ' Example.org , news@example.com,, ' );

		$this->assertTrue( $senders->is_restricted() );
		$this->assertTrue( $senders->allows( 'anyone@example.org' ) );
		$this->assertTrue( $senders->allows( 'ANYONE@EXAMPLE.ORG' ) );
		$this->assertTrue( $senders->allows( 'news@example.com' ) );
		$this->assertFalse( $senders->allows( 'other@example.com' ) );
		$this->assertFalse( $senders->allows( 'a@mail.example.org' ), 'a domain does not cover its subdomains' );
		$this->assertFalse( $senders->allows( 'example.org@evil.example' ) );
		$this->assertTrue( ( new Postbag_Allowed_Senders( '' ) )->allows( 'anyone@anywhere.example' ) );
		$this->assertFalse( ( new Postbag_Allowed_Senders( ' , ' ) )->is_restricted() );
	}

	public function test_a_spool_that_cannot_be_written_is_critical(): void {
		file_put_contents( $this->temp_dir . '/file', 'not a directory' );
		$health = new Postbag_Site_Health( new Postbag_Spool( $this->temp_dir . '/file/spool' ), new Postbag_Allowed_Senders( '' ), $this->plugin->interceptor() );

		$result = $health->spool_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( esc_html( $this->temp_dir . '/file/spool' ), $result['description'] );
	}

	public function test_a_healthy_spool_says_where_it_is_and_why_it_is_private(): void {
		$result = $this->plugin->site_health()->spool_result();

		$this->assertSame( 'good', $result['status'] );
		$this->assertStringContainsString( esc_html( $this->spool_dir ), $result['description'] );
		$this->assertDirectoryExists( $this->spool_dir, 'checked by making it ready' );
	}

	public function test_descriptions_are_escaped(): void {
		$this->use_settings( array( 'allowed_senders' => 'example.org' ) );
		self::send_from( '<script>x</script>@evil.example' );

		$result = $this->plugin->site_health()->sender_result();

		$this->assertStringNotContainsString( '<script>', $result['description'] );
		$this->assertStringContainsString( '&lt;script&gt;', $result['description'] );
	}

	protected function tearDown(): void {
		delete_site_transient( Postbag_Bucket_Probe::TRANSIENT );
		parent::tearDown();
	}

	/** Spools one batch of one mail (S3 failing), at the test clock's time. */
	private function spool_a_batch(): void {
		$this->s3->fail_pattern = '/^queue\//';
		$this->s3->fail_error   = 'Service Unavailable';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$this->plugin->flush();
		$this->s3->fail_pattern = null;
	}

	public function test_every_test_is_listed(): void {
		$tests = apply_filters( 'site_status_tests', array( 'direct' => array() ) );

		foreach ( array( 'postbag_spool', 'postbag_sender', 'postbag_stuck', 'postbag_bucket', 'postbag_delivery', 'postbag_constants' ) as $name ) {
			$this->assertArrayHasKey( $name, $tests['direct'], $name );
			$this->assertSame( $name, call_user_func( $tests['direct'][ $name ]['test'] )['test'] );
		}
	}

	public function test_mail_in_the_spool_longer_than_the_limit_is_critical(): void {
		$this->spool_a_batch();

		$this->assertSame( 'good', $this->plugin->site_health()->stuck_result()['status'], 'just spooled: not stuck yet' );

		$this->now += 16 * 60;
		$result     = $this->plugin->site_health()->stuck_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( '1 mail(s) in 1 batch(es) have waited in the spool for more than 15 minutes', $result['description'] );
		$this->assertStringContainsString( 'Service Unavailable', $result['description'] );
	}

	public function test_uploaded_mail_without_a_receipt_after_the_limit_is_critical(): void {
		self::empty_mail_log();
		wp_mail( array( 'a@example.net', self::MARKER ), 'Uploaded', 'Body' );
		wp_mail( array( 'b@example.net', self::MARKER ), 'Held', 'Body', array( 'X-Postbag-Send-At: ' . gmdate( 'Y-m-d H:i', $this->now + 3600 ) ) );
		$this->flush_and_log();
		$this->assertSame( 'good', $this->plugin->site_health()->stuck_result()['status'], 'just uploaded' );

		$this->now += 16 * 60;
		$result     = $this->plugin->site_health()->stuck_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( '1 mail(s) reached the bucket more than 15 minutes ago and the sender has written no receipt', $result['description'], 'the held one is not due yet' );
		$this->plugin->log()->set_status( $this->plugin->log()->query( array( 'subject' => 'Uploaded' ) )['rows'][0]['mail_id'], 'sent' );
		$this->assertSame( 'good', $this->plugin->site_health()->stuck_result()['status'], 'its receipt came' );
	}

	public function test_the_stuck_limit_is_a_setting(): void {
		$this->use_settings( array( 'stuck_after_minutes' => 60 ) );
		$this->spool_a_batch();
		$this->now += 16 * 60;

		$this->assertSame( 'good', $this->plugin->site_health()->stuck_result()['status'] );
		$this->now += 45 * 60;
		$this->assertSame( 'critical', $this->plugin->site_health()->stuck_result()['status'] );
	}

	/**
	 * @return array<string, array{0: callable(Postbag_Fake_S3_Client): void, 1: string, 2: string}>
	 */
	public function bucket_answers(): array {
		return array(
			'object present'                   => array(
				static function ( Postbag_Fake_S3_Client $s3 ): void {
					$s3->objects['status/account.json'] = array( 'body' => '{"version":1}', 'content_type' => 'application/json' );
				},
				'good',
				'HTTP 200',
			),
			'missing object (404)'              => array(
				static function (): void {
				},
				'good',
				'HTTP 404',
			),
			'missing object, no list right (403 AccessDenied)' => array(
				static function ( Postbag_Fake_S3_Client $s3 ): void {
					$s3->missing_status = 403;
				},
				'good',
				'HTTP 403',
			),
			'no answer'                         => array(
				static function ( Postbag_Fake_S3_Client $s3 ): void {
					$s3->fail_pattern = '/./';
					$s3->fail_status  = 0;
					$s3->fail_error   = 'curl error 7: Failed to connect to 127.0.0.1 port 9: Connection refused';
				},
				'critical',
				'Connection refused',
			),
			'signature rejected'                => array(
				static function ( Postbag_Fake_S3_Client $s3 ): void {
					$s3->fail_pattern = '/./';
					$s3->fail_status  = 403;
					$s3->fail_error   = 'SignatureDoesNotMatch: The request signature we calculated does not match';
				},
				'critical',
				'SignatureDoesNotMatch',
			),
			'no such bucket'                    => array(
				static function ( Postbag_Fake_S3_Client $s3 ): void {
					$s3->fail_pattern = '/./';
					$s3->fail_status  = 404;
					$s3->fail_error   = 'NoSuchBucket: The specified bucket does not exist';
				},
				'critical',
				'NoSuchBucket',
			),
			'S3 failing'                        => array(
				static function ( Postbag_Fake_S3_Client $s3 ): void {
					$s3->fail_pattern = '/./';
				},
				'critical',
				'HTTP 503',
			),
		);
	}

	/**
	 * @dataProvider bucket_answers
	 */
	public function test_the_bucket_test_reads_a_key_with_a_signed_request( callable $answer, string $status, string $said ): void {
		$answer( $this->s3 );

		$result = $this->plugin->site_health()->bucket_result();

		$this->assertSame( $status, $result['status'] );
		$this->assertStringContainsString( esc_html( $said ), $result['description'] );
		$this->assertSame( array( Postbag_Bucket_Probe::KEY ), $this->s3->reads );
	}

	public function test_the_bucket_answer_is_kept_a_minute(): void {
		$this->s3->fail_pattern = '/./';
		$this->s3->fail_status  = 0;
		$this->assertSame( 'critical', $this->plugin->site_health()->bucket_result()['status'] );

		$this->s3->fail_pattern = null;
		$this->assertSame( 'critical', $this->plugin->site_health()->bucket_result()['status'], 'the cached answer' );
		$this->assertCount( 1, $this->s3->reads );

		delete_site_transient( Postbag_Bucket_Probe::TRANSIENT ); // What a minute does.
		$this->assertSame( 'good', $this->plugin->site_health()->bucket_result()['status'] );
		$this->assertCount( 2, $this->s3->reads );
	}

	public function test_no_bucket_is_critical(): void {
		$this->use_settings( array( 'bucket' => '' ) );

		$result = $this->plugin->site_health()->bucket_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( 'POSTBAG_BUCKET is not defined', $result['description'] );
	}

	/**
	 * @return array<string, array{0: array<string, int>, 1: string}>
	 */
	public function recent_counts(): array {
		return array(
			'all sent'       => array( array( 'sent' => 12, 'failed' => 0, 'quarantined' => 0 ), 'good' ),
			'one failed'     => array( array( 'sent' => 12, 'failed' => 1, 'quarantined' => 0 ), 'critical' ),
			'one quarantined' => array( array( 'sent' => 0, 'failed' => 0, 'quarantined' => 1 ), 'critical' ),
			'nothing at all' => array( array(), 'good' ),
		);
	}

	/**
	 * @dataProvider recent_counts
	 * @param array<string, int> $counts What the email log counts.
	 */
	public function test_failed_or_quarantined_mail_of_the_last_day_is_critical( array $counts, string $status ): void {
		$asked  = array();
		$health = new Postbag_Site_Health(
			$this->plugin->spool(),
			new Postbag_Allowed_Senders( '' ),
			$this->plugin->interceptor(),
			array(
				'counts' => static function ( int $since ) use ( $counts, &$asked ): array {
					$asked[] = $since;
					return $counts;
				},
				'clock'  => function (): int {
					return $this->now;
				},
			)
		);

		$result = $health->delivery_result();

		$this->assertSame( $status, $result['status'] );
		$this->assertSame( array( $this->now - DAY_IN_SECONDS ), $asked, 'the last 24 hours' );
	}

	public function test_a_failed_mail_in_the_email_log_makes_delivery_critical(): void {
		$this->assertSame( 'good', $this->plugin->site_health()->delivery_result()['status'] );
		$mail_id = 'health-' . bin2hex( random_bytes( 4 ) );
		$this->plugin->log()->record_queued(
			array(
				array(
					'mail_id'    => $mail_id,
					'recipients' => array( 'a@example.net' ),
					'subject'    => 'Hi',
				),
			)
		);
		$this->plugin->log()->set_status( $mail_id, 'failed', 'MessageRejected' );

		$result = $this->plugin->site_health()->delivery_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( '1 mail(s) failed', $result['description'] );
	}

	public function test_a_misspelt_constant_is_named_with_the_one_meant(): void {
		if ( ! defined( 'POSTBAG_BUKCET' ) ) {
			define( 'POSTBAG_BUKCET', 'secret-looking value' );
		}

		$result = $this->plugin->site_health()->constants_result();

		$this->assertSame( 'recommended', $result['status'] );
		$this->assertStringContainsString( 'POSTBAG_BUKCET (did you mean POSTBAG_BUCKET?)', $result['description'] );
		$this->assertStringNotContainsString( 'secret-looking value', $result['description'], 'names only' );
		add_filter(
			'postbag_known_constants',
			static function ( array $known ): array {
				return array_merge( $known, array( 'POSTBAG_BUKCET' ) );
			}
		);
		$this->assertSame( 'good', $this->plugin->site_health()->constants_result()['status'] );
	}

	public function test_postbag_from_replaces_wordpress_default_from(): void {
		$this->use_settings(
			array(
				'from'            => 'Blog News <news@example.org>',
				'allowed_senders' => 'example.org',
			)
		);

		$this->assertSame( 'news@example.org', $this->plugin->interceptor()->effective_default_from() );
		$this->assertSame( 'good', $this->plugin->site_health()->sender_result()['status'] );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Default From', 'Body' );
		wp_mail( array( 'b@example.net', self::MARKER ), 'Own From', 'Body', array( 'From: Editors <editors@example.org>' ) );
		$this->plugin->flush();
		$froms = array();
		foreach ( $this->s3->batches() as $batch ) {
			foreach ( $batch['emails'] as $mail ) {
				$froms[ $mail['subject'] ] = $mail['meta']['from'] ?? $batch['meta']['from'] ?? null;
			}
		}
		$this->assertSame( 'Blog News <news@example.org>', $froms['Default From'] );
		$this->assertSame( 'Editors <editors@example.org>', $froms['Own From'], 'a From header still wins' );
	}

	public function test_a_postbag_from_the_sender_refuses_is_critical(): void {
		$this->use_settings(
			array(
				'from'            => 'news@example.com',
				'allowed_senders' => 'example.org',
			)
		);

		$result = $this->plugin->site_health()->sender_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( 'news@example.com', $result['label'] );
	}

	public function test_a_postbag_from_that_is_no_address_is_critical_and_ignored(): void {
		$this->use_settings( array( 'from' => 'not an address' ) );

		$result = $this->plugin->site_health()->sender_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( 'POSTBAG_FROM (not an address) is not an email address', $result['description'] );
		$this->assertSame( self::DEFAULT_FROM, $this->plugin->interceptor()->effective_default_from() );
	}
}
