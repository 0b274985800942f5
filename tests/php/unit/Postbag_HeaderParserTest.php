<?php
/**
 * Header parsing, string and array forms, as core's wp_mail() does it.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Header_Parser
 * @covers Postbag_Interceptor
 */
final class Postbag_HeaderParserTest extends Postbag_Unit_Test_Case {

	/** The same headers in core's two accepted forms. */
	public function header_forms(): array {
		$lines = array(
			'From: "Zoë C. Café" <zoe@example.org>',
			'Cc: Ann <ann@example.net>, bob@example.net',
			'Bcc: archive@example.org',
			'Reply-To: Editors <editors@example.org>',
			'Content-Type: text/html; charset="utf-8"',
			'List-Unsubscribe: <https://blog.example.org/u>',
			'X-Campaign: weekly',
		);
		return array(
			'string, CRLF' => array( implode( "\r\n", $lines ) ),
			'string, LF'   => array( implode( "\n", $lines ) . "\n" ),
			'array'        => array( $lines ),
		);
	}

	/**
	 * @dataProvider header_forms
	 * @param string|string[] $headers Headers as wp_mail() takes them.
	 */
	public function test_parses_like_core( $headers ): void {
		$parsed = Postbag_Header_Parser::parse( $headers );

		$this->assertSame( 'Zoë C. Café', $parsed['from_name'] );
		$this->assertSame( 'zoe@example.org', $parsed['from_email'] );
		$this->assertSame( array( 'Ann <ann@example.net>', 'bob@example.net' ), $parsed['cc'] );
		$this->assertSame( array( 'archive@example.org' ), $parsed['bcc'] );
		$this->assertSame( array( 'Editors <editors@example.org>' ), $parsed['reply_to'] );
		$this->assertSame( 'text/html', $parsed['content_type'] );
		$this->assertSame( 'utf-8', $parsed['charset'] );
		$this->assertSame(
			array(
				'List-Unsubscribe' => '<https://blog.example.org/u>',
				'X-Campaign'       => 'weekly',
			),
			$parsed['headers']
		);
	}

	/**
	 * @dataProvider header_forms
	 * @param string|string[] $headers Headers as wp_mail() takes them.
	 */
	public function test_batch_meta_from_headers( $headers ): void {
		$this->assertTrue( wp_mail( 'Zoë <zoe@example.net>, Ann Other <ann@example.net>, ' . self::MARKER, 'Hi', '<p>Hi</p>', $headers ) );

		$batch = $this->flush_batches()[0];
		$this->assertSame( '"Zoë C. Café" <zoe@example.org>', $batch['meta']['from'], 'A name with a dot is quoted; non-ASCII stays UTF-8.' );
		$this->assertSame( array( 'Ann <ann@example.net>', 'bob@example.net' ), $batch['meta']['cc'] );
		$this->assertSame( array( 'archive@example.org' ), $batch['meta']['bcc'] );
		$this->assertSame( array( 'Editors <editors@example.org>' ), $batch['meta']['reply_to'] );
		$this->assertSame( 'utf-8', $batch['meta']['charset'] );
		$this->assertSame(
			array(
				array(
					'name'  => 'List-Unsubscribe',
					'value' => '<https://blog.example.org/u>',
				),
				array(
					'name'  => 'X-Campaign',
					'value' => 'weekly',
				),
			),
			$batch['meta']['headers']
		);
		$this->assertSame( array( 'Zoë <zoe@example.net>', 'Ann Other <ann@example.net>' ), $batch['emails'][0]['to'] );
		$this->assertSame( '<p>Hi</p>', $batch['emails'][0]['html'] );
	}

	public function test_bare_from_address_and_content_type_without_parameters(): void {
		$parsed = Postbag_Header_Parser::parse( "From: news@example.org\nContent-Type: text/html" );

		$this->assertNull( $parsed['from_name'] );
		$this->assertSame( 'news@example.org', $parsed['from_email'] );
		$this->assertSame( 'text/html', $parsed['content_type'] );
		$this->assertNull( $parsed['charset'] );
	}

	public function test_boundary_in_content_type_and_on_its_own_line(): void {
		$inline = Postbag_Header_Parser::parse( 'Content-Type: multipart/alternative; boundary="=_b1"' );
		$legacy = Postbag_Header_Parser::parse( array( 'Content-Type: multipart/mixed;', "\tboundary=\"=_b2\"" ) );

		$this->assertSame( 'multipart/alternative', $inline['content_type'] );
		$this->assertSame( '=_b1', $inline['boundary'] );
		$this->assertSame( 'multipart/mixed', $legacy['content_type'] );
		$this->assertSame( '=_b2', $legacy['boundary'] );
	}

	public function test_parameter_names_are_case_insensitive_and_order_free(): void {
		$parsed = Postbag_Header_Parser::parse( 'content-type: text/plain; format=flowed; CHARSET=utf-8' );

		$this->assertSame( 'text/plain', $parsed['content_type'] );
		$this->assertSame( 'utf-8', $parsed['charset'] );
	}

	public function test_repeated_address_headers_accumulate_and_custom_ones_keep_the_last(): void {
		$parsed = Postbag_Header_Parser::parse( array( 'Cc: a@example.net', 'cc: b@example.net, , ', 'X-Tag: one', 'X-Tag: two', 'MIME-Version: 1.0', 'X-Mailer: Foo' ) );

		$this->assertSame( array( 'a@example.net', 'b@example.net' ), $parsed['cc'] );
		$this->assertSame( array( 'X-Tag' => 'two' ), $parsed['headers'], 'Keyed by name as core does; MIME-Version and X-Mailer are PHPMailer\'s.' );
	}

	public function test_lines_without_a_colon_are_ignored_like_core(): void {
		$parsed = Postbag_Header_Parser::parse( "X-A: 1\n\nnot a header\n" );

		$this->assertSame( array( 'X-A' => '1' ), $parsed['headers'] );
	}

	public function test_empty_headers(): void {
		foreach ( array( '', array(), null ) as $empty ) {
			$parsed = Postbag_Header_Parser::parse( $empty );
			$this->assertSame( array(), $parsed['headers'] );
			$this->assertNull( $parsed['from_email'] );
		}
	}

	public function test_recipients_split_on_commas_from_a_string_or_taken_from_an_array(): void {
		$this->assertSame( array( 'a@example.net', 'B <b@example.net>' ), Postbag_Header_Parser::split_addresses( ' a@example.net ,B <b@example.net>,' ) );
		$this->assertSame( array( 'a@example.net', 'b@example.net' ), Postbag_Header_Parser::split_addresses( array( 'a@example.net', ' b@example.net ', '' ) ) );
	}

	public function test_mailbox_split_and_format(): void {
		$this->assertSame( array( 'Zoë', 'zoe@example.net' ), Postbag_Header_Parser::split_mailbox( '"Zoë" <zoe@example.net>' ) );
		$this->assertSame( array( '', 'zoe@example.net' ), Postbag_Header_Parser::split_mailbox( ' zoe@example.net ' ) );
		$this->assertSame( 'Zoë <zoe@example.net>', Postbag_Header_Parser::format_mailbox( 'Zoë', 'zoe@example.net' ) );
		$this->assertSame( '"Doe, J. \\"Jo\\"" <jo@example.net>', Postbag_Header_Parser::format_mailbox( 'Doe, J. "Jo"', 'jo@example.net' ) );
		$this->assertSame( 'jo@example.net', Postbag_Header_Parser::format_mailbox( '', 'jo@example.net' ) );
	}

	public function test_invalid_recipients_are_left_out_like_core(): void {
		$this->assertTrue( wp_mail( 'not-an-address, zoe@example.net, ' . self::MARKER, 'Hi', 'Body' ) );

		$this->assertSame( array( 'zoe@example.net' ), $this->flush_batches()[0]['emails'][0]['to'] );
	}

	/** Header injections, each through a different door. */
	public function injections(): array {
		return array(
			'array header with LF'   => array( 'a@example.net, ' . self::MARKER, 'Hi', array( "X-A: 1\nBcc: evil@example.com" ) ),
			'array header with CR'   => array( 'a@example.net, ' . self::MARKER, 'Hi', array( "X-A: 1\rBcc: evil@example.com" ) ),
			'lone CR in string form' => array( 'a@example.net, ' . self::MARKER, 'Hi', "X-A: 1\rBcc: evil@example.com" ),
			'subject'                => array( 'a@example.net, ' . self::MARKER, "Hi\r\nBcc: evil@example.com", '' ),
			'recipient in array'     => array( array( "a@example.net\nBcc: evil@example.com", self::MARKER ), 'Hi', '' ),
			'prefixed subject'       => array( 'a@example.net', "[Non-priority!] Hi\nBcc: evil@example.com", '' ),
		);
	}

	/**
	 * @dataProvider injections
	 * @param string|string[] $to      Recipients.
	 * @param string          $subject Subject.
	 * @param string|string[] $headers Headers.
	 */
	public function test_line_breaks_in_a_header_value_are_refused( $to, string $subject, $headers ): void {
		$this->assertFalse( wp_mail( $to, $subject, 'Body', $headers ) );

		$this->assertCount( 1, $this->failures );
		$this->assertSame( 'postbag_header_injection', $this->failures[0]->get_error_data()['postbag_reason'] );
		$this->assertSame( 0, $this->plugin->queue()->count() );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent );
	}

	public function test_line_breaks_from_a_from_filter_are_refused(): void {
		add_filter(
			'wp_mail_from_name',
			static function (): string {
				return "Blog\r\nBcc: evil@example.com";
			}
		);

		$this->assertFalse( wp_mail( 'a@example.net, ' . self::MARKER, 'Hi', 'Body' ) );
		$this->assertSame( 'postbag_header_injection', $this->failures[0]->get_error_data()['postbag_reason'] );
	}

	public function test_invalid_custom_header_name_is_refused(): void {
		$this->assertFalse( wp_mail( 'a@example.net, ' . self::MARKER, 'Hi', 'Body', array( 'X Bad Name: 1' ) ) );
		$this->assertSame( 'postbag_invalid_header', $this->failures[0]->get_error_data()['postbag_reason'] );
	}
}
