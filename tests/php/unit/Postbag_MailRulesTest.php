<?php
/**
 * The refusal lists, shared with the sender, and the size arithmetic.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Mail_Rules
 */
final class Postbag_MailRulesTest extends Postbag_Unit_Test_Case {

	/** The lists the sender reads too (the plugin ships without fixtures/, so it keeps a copy). */
	private static function shared(): array {
		return json_decode( (string) file_get_contents( dirname( __DIR__, 3 ) . '/fixtures/sending-rules.json' ), true, 8, JSON_THROW_ON_ERROR );
	}

	/**
	 * @param string[] $list A list.
	 * @return string[] Sorted.
	 */
	private static function sorted( array $list ): array {
		sort( $list );
		return $list;
	}

	public function test_the_lists_are_the_ones_shared_with_the_sender(): void {
		$shared = self::shared();

		$this->assertSame( $shared['refused_extensions'], self::sorted( Postbag_Mail_Rules::REFUSED_EXTENSIONS ) );
		$this->assertSame( $shared['builder_headers'], self::sorted( Postbag_Mail_Rules::BUILDER_HEADERS ) );
		$this->assertSame( $shared['trace_headers'], self::sorted( Postbag_Mail_Rules::TRACE_HEADERS ) );
		$this->assertSame( $shared['trace_header_prefixes'], self::sorted( Postbag_Mail_Rules::TRACE_HEADER_PREFIXES ) );
		$this->assertSame( $shared['max_raw_message_bytes'], Postbag_Mail_Rules::MAX_RAW_MESSAGE_BYTES );
	}

	public function test_every_refused_extension_is_refused_and_others_are_not(): void {
		foreach ( self::shared()['refused_extensions'] as $extension ) {
			try {
				Postbag_Mail_Rules::attachment_name( 'name', "file.$extension" );
				$this->fail( ".$extension passed" );
			} catch ( Postbag_Mail_Exception $e ) {
				$this->assertSame( 'postbag_attachment_type', $e->reason );
			}
		}
		foreach ( array( 'report.pdf', 'photo.jpeg', 'notes', '.htaccess.txt', 'exe' ) as $fine ) {
			Postbag_Mail_Rules::attachment_name( 'name', $fine );
		}
		$this->addToAssertionCount( 1 );
	}

	public function test_encoded_size_is_base64_with_crlf_every_76_characters(): void {
		$this->assertSame( 0, Postbag_Mail_Rules::encoded_bytes( 0 ) );
		$this->assertSame( 4 + 2, Postbag_Mail_Rules::encoded_bytes( 1 ) );
		$this->assertSame( 76 + 2, Postbag_Mail_Rules::encoded_bytes( 57 ) );
		$this->assertSame( 80 + 4, Postbag_Mail_Rules::encoded_bytes( 58 ) );
		$this->assertSame( strlen( chunk_split( base64_encode( random_bytes( 100000 ) ), 76, "\r\n" ) ), Postbag_Mail_Rules::encoded_bytes( 100000 ) );
	}

	public function test_the_largest_attachment_a_plain_mail_can_carry_is_about_seven_and_a_half_mb(): void {
		$budget  = Postbag_Mail_Rules::attachment_budget( 1000, false ) - Postbag_Mail_Rules::PART_OVERHEAD_BYTES;
		$largest = intdiv( $budget, 78 ) * 57; // 57 bytes make one 76-character line and its CRLF.

		$this->assertLessThanOrEqual( $budget, Postbag_Mail_Rules::encoded_bytes( $largest ) );
		$this->assertGreaterThan( 7500000, $largest );
		$this->assertLessThan( 7700000, $largest );
	}

	public function test_an_html_body_counts_twice_since_the_sender_adds_its_text(): void {
		$this->assertSame(
			Postbag_Mail_Rules::attachment_budget( 1000, false ) - Postbag_Mail_Rules::encoded_bytes( 1000 ),
			Postbag_Mail_Rules::attachment_budget( 1000, true )
		);
	}

	public function test_a_windows_drive_is_a_path_not_a_wrapper(): void {
		Postbag_Mail_Rules::attachment_path( 'C:\\Temp\\report.pdf' );
		Postbag_Mail_Rules::attachment_path( '/var/www/report:2026.pdf' );
		$this->expectException( Postbag_Mail_Exception::class );
		Postbag_Mail_Rules::attachment_path( 'ab:report.pdf' );
	}
}
