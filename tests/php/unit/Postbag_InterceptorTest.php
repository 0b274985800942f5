<?php
/**
 * Marker detection and removal, and what reaches core.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Interceptor
 * @covers Postbag_Marker
 */
final class Postbag_InterceptorTest extends Postbag_Unit_Test_Case {

	public function test_marker_address_in_to_queues_the_mail_without_it(): void {
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Hello', 'Body' ) );

		$this->assertSame( 1, $this->plugin->queue()->count() );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'A queued mail never reaches core.' );
		$mail = $this->flush_batches()[0]['emails'][0];
		$this->assertSame( array( 'zoe@example.net' ), $mail['to'] );
		$this->assertSame( 'Hello', $mail['subject'] );
	}

	public function test_marker_address_matches_with_display_name_and_any_case(): void {
		$this->assertTrue( wp_mail( 'zoe@example.net, Queue <NonPriority@Asynchronous.Mail>', 'Hi', 'Body' ) );

		$this->assertSame( array( 'zoe@example.net' ), $this->flush_batches()[0]['emails'][0]['to'] );
	}

	public function test_marker_address_in_bcc_header_is_removed(): void {
		$this->assertTrue( wp_mail( 'zoe@example.net', 'Hi', 'Body', array( 'Bcc: archive@example.org, ' . self::MARKER ) ) );

		$meta = $this->flush_batches()[0]['meta'];
		$this->assertSame( array( 'archive@example.org' ), $meta['bcc'] );
	}

	public function test_subject_prefix_queues_the_mail_and_is_removed(): void {
		$this->assertTrue( wp_mail( 'zoe@example.net', '[Non-priority!] New post: Café', 'Body' ) );

		$this->assertSame( 'New post: Café', $this->flush_batches()[0]['emails'][0]['subject'] );
	}

	public function test_configured_markers_replace_the_defaults(): void {
		$this->use_settings(
			array(
				'marker_address' => 'later@queue.invalid',
				'marker_prefix'  => '[bulk]',
			)
		);

		$this->assertTrue( wp_mail( 'zoe@example.net, later@queue.invalid', 'One', 'Body' ) );
		$this->assertTrue( wp_mail( 'zoe@example.net', '[bulk] Two', 'Body' ) );
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Three', 'Body' ) );

		$this->assertSame( 2, $this->plugin->queue()->count() );
		$this->assertCount( 1, Postbag_Test_Mailer::current()->sent, 'The default marker means nothing once another is set.' );
	}

	public function test_filter_makes_an_unmarked_mail_non_priority(): void {
		add_filter(
			'postbag_is_non_priority',
			static function ( bool $non_priority, array $atts ): bool {
				return 0 === strpos( $atts['subject'], 'Digest' );
			},
			10,
			2
		);

		$this->assertTrue( wp_mail( 'zoe@example.net', 'Digest of the week', 'Body' ) );
		$this->assertTrue( wp_mail( 'zoe@example.net', 'Password reset', 'Body' ) );

		$this->assertSame( 1, $this->plugin->queue()->count() );
		$this->assertSame( 'Digest of the week', $this->flush_batches()[0]['emails'][0]['subject'] );
		$this->assertSame( 'Password reset', Postbag_Test_Mailer::current()->sent[0]['subject'] );
	}

	public function test_unmarked_mail_goes_through_core_untouched(): void {
		$this->assertNull( $this->plugin->interceptor()->pre_wp_mail( null, array( 'to' => 'zoe@example.net', 'subject' => 'Reset', 'message' => 'x' ) ) );

		$this->assertTrue( wp_mail( 'zoe@example.net', 'Reset', 'Your link' ) );
		$this->assertSame( 0, $this->plugin->queue()->count() );
		$this->assertCount( 1, Postbag_Test_Mailer::current()->sent );
	}

	public function test_marker_text_outside_the_recipients_does_not_mark(): void {
		$this->assertTrue( wp_mail( 'zoe@example.net', 'Hi', 'Body', 'X-Note: ' . self::MARKER ) );

		$this->assertSame( 0, $this->plugin->queue()->count() );
		$this->assertCount( 1, Postbag_Test_Mailer::current()->sent );
	}

	public function test_an_earlier_short_circuit_is_respected(): void {
		$this->assertFalse( $this->plugin->interceptor()->pre_wp_mail( false, array( 'to' => self::MARKER . ', a@example.net', 'subject' => 'x', 'message' => 'x' ) ) );
		$this->assertSame( 0, $this->plugin->queue()->count() );
	}

	public function test_the_marker_alone_in_to_sends_to_the_bcc_list(): void {
		$this->assertTrue( wp_mail( self::MARKER, 'Hi', 'Body', 'Bcc: list@example.org, more@example.org' ) );

		$this->assertCount( 0, $this->failures );
		$batch = $this->flush_batches()[0];
		$this->assertSame( array(), $batch['emails'][0]['to'] );
		$this->assertSame( array( 'list@example.org', 'more@example.org' ), $batch['meta']['bcc'] );
	}

	public function test_a_mail_with_no_recipient_but_the_marker_fails(): void {
		$this->assertFalse( wp_mail( self::MARKER, 'Hi', 'Body' ) );

		$this->assertCount( 1, $this->failures );
		$this->assertSame( 'wp_mail_failed', $this->failures[0]->get_error_code() );
		$this->assertSame( 'postbag_no_recipient', $this->failures[0]->get_error_data()['postbag_reason'] );
	}

	public function test_core_filters_are_applied_at_enqueue_time(): void {
		add_filter(
			'wp_mail_from',
			static function (): string {
				return 'news@example.org';
			}
		);
		add_filter(
			'wp_mail_from_name',
			static function (): string {
				return 'Zoë’s Blog';
			}
		);
		add_filter(
			'wp_mail_content_type',
			static function (): string {
				return 'text/html';
			}
		);
		add_filter(
			'wp_mail_charset',
			static function (): string {
				return 'UTF-8';
			}
		);

		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Hi', '<p>Hi</p>' ) );

		$batch = $this->flush_batches()[0];
		$this->assertSame( 'Zoë’s Blog <news@example.org>', $batch['meta']['from'] );
		$this->assertSame( 'text/html', $batch['meta']['content_type'] );
		$this->assertSame( '<p>Hi</p>', $batch['emails'][0]['html'] );
		$this->assertArrayNotHasKey( 'text', $batch['emails'][0] );
	}

	public function test_core_defaults_when_nothing_is_given(): void {
		$this->assertTrue( wp_mail( array( 'zoe@example.net', self::MARKER ), 'Hi', 'Plain' ) );

		$batch = $this->flush_batches()[0];
		$host  = preg_replace( '/^www\./', '', (string) wp_parse_url( network_home_url(), PHP_URL_HOST ) );
		$this->assertSame( "WordPress <wordpress@$host>", $batch['meta']['from'] );
		$this->assertSame( 'text/plain', $batch['meta']['content_type'] );
		$this->assertSame( get_bloginfo( 'charset' ), $batch['meta']['charset'] );
		$this->assertSame( 'Plain', $batch['emails'][0]['text'] );
		$this->assertSame( home_url(), $batch['site']['url'] );
		$this->assertSame( get_current_blog_id(), $batch['site']['blog_id'] );
	}

	public function test_each_mail_gets_its_own_uuid(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'One', 'Body' );
		wp_mail( array( 'b@example.net', self::MARKER ), 'Two', 'Body' );

		$ids = array_column( $this->flush_batches()[0]['emails'], 'id' );
		$this->assertCount( 2, array_unique( $ids ) );
		foreach ( $ids as $id ) {
			$this->assertTrue( wp_is_uuid( $id, 4 ), $id );
		}
	}

	public function test_multipart_mail_is_refused_with_a_reason(): void {
		$this->assertFalse( wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', '--b--', 'Content-Type: multipart/alternative; boundary="b"' ) );

		$this->assertSame( 'postbag_unsupported_content_type', $this->failures[0]->get_error_data()['postbag_reason'] );
		$this->assertSame( 0, $this->plugin->queue()->count() );
	}

	public function test_more_than_fifty_recipients_are_refused(): void {
		$to   = array_map(
			static function ( int $n ): string {
				return "user$n@example.net";
			},
			range( 1, 51 )
		);
		$to[] = self::MARKER;

		$this->assertFalse( wp_mail( $to, 'Hi', 'Body' ) );
		$this->assertSame( 'postbag_too_many_recipients', $this->failures[0]->get_error_data()['postbag_reason'] );
	}

	public function test_non_utf8_charset_is_converted_for_the_batch_file(): void {
		$subject = mb_convert_encoding( 'Café', 'ISO-8859-1', 'UTF-8' );

		$this->assertTrue( wp_mail( array( 'a@example.net', self::MARKER ), $subject, $subject, 'Content-Type: text/plain; charset=ISO-8859-1' ) );

		$batch = $this->flush_batches()[0];
		$this->assertSame( 'ISO-8859-1', $batch['meta']['charset'] );
		$this->assertSame( 'Café', $batch['emails'][0]['subject'] );
	}
}
