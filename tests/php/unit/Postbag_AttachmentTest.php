<?php
/**
 * Attachments: inline, uploaded separately, missing.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Attachment_Reader
 * @covers Postbag_Batch_Uploader
 */
final class Postbag_AttachmentTest extends Postbag_Unit_Test_Case {

	public function test_small_files_go_inline_as_base64(): void {
		$pdf = $this->temp_file( 'report.pdf', '%PDF-1.4 tiny' );
		$txt = $this->temp_file( 'notes.txt', "Grüße\n" );

		$this->assertTrue( wp_mail( array( 'a@example.net', self::MARKER ), 'Files', 'Body', '', array( $pdf, $txt ) ) );

		$attachments = $this->flush_batches()[0]['emails'][0]['attachments'];
		$this->assertSame(
			array(
				array(
					'filename'       => 'report.pdf',
					'content_type'   => 'application/pdf',
					'content_base64' => base64_encode( '%PDF-1.4 tiny' ),
				),
				array(
					'filename'       => 'notes.txt',
					'content_type'   => 'text/plain',
					'content_base64' => base64_encode( "Grüße\n" ),
				),
			),
			$attachments
		);
	}

	public function test_names_from_array_keys_and_newline_separated_strings(): void {
		$one = $this->temp_file( 'tmp-1a2b.bin', 'one' );
		$two = $this->temp_file( 'two.txt', 'two' );

		wp_mail( array( 'a@example.net', self::MARKER ), 'Named', 'Body', '', array( 'Invoice 42.pdf' => $one ) );
		wp_mail( array( 'b@example.net', self::MARKER ), 'String', 'Body', '', "$one\r\n$two\n" );

		$emails = $this->flush_batches()[0]['emails'];
		$this->assertSame( 'Invoice 42.pdf', $emails[0]['attachments'][0]['filename'] );
		$this->assertSame( 'application/pdf', $emails[0]['attachments'][0]['content_type'] );
		$this->assertSame( array( 'tmp-1a2b.bin', 'two.txt' ), array_column( $emails[1]['attachments'], 'filename' ) );
		$this->assertSame( 'application/octet-stream', $emails[1]['attachments'][0]['content_type'] );
	}

	public function test_large_files_become_separate_objects_uploaded_first(): void {
		$this->use_settings( array( 'inline_attachment_max_bytes' => 1024 ) );
		$small = $this->temp_file( 'small.txt', 'small' );
		$large = $this->temp_file( 'large.pdf', str_repeat( 'L', 4096 ) );

		$this->assertTrue( wp_mail( array( 'a@example.net', self::MARKER ), 'Files', 'Body', '', array( $small, $large ) ) );
		$this->plugin->flush();

		$batch = array_values( $this->s3->batches() )[0];
		$mail  = $batch['emails'][0];
		$key   = "queue/attachments/{$batch['batch_id']}/{$mail['id']}/1";
		$this->assertArrayHasKey( 'content_base64', $mail['attachments'][0] );
		$this->assertSame(
			array(
				'filename'     => 'large.pdf',
				'content_type' => 'application/pdf',
				'size'         => 4096,
				's3_key'       => $key,
			),
			$mail['attachments'][1]
		);
		$this->assertSame( str_repeat( 'L', 4096 ), $this->s3->objects[ $key ]['body'] );
		$this->assertSame( array( array( $key ), array( "queue/{$batch['batch_id']}.json" ) ), $this->s3->calls, 'Attachments first, then the batch file.' );
	}

	public function test_a_failed_attachment_upload_holds_back_its_batch_only(): void {
		$this->use_settings(
			array(
				'inline_attachment_max_bytes' => 10,
				'chunk_max_mails'             => 1,
			)
		);
		$this->s3->fail_pattern = '#/attachments/#';
		wp_mail( array( 'a@example.net', self::MARKER ), 'With', 'Body', '', array( $this->temp_file( 'big.bin', str_repeat( 'x', 100 ) ) ) );
		wp_mail( array( 'b@example.net', self::MARKER ), 'Without', 'Body' );

		$outcome = $this->plugin->flush();

		$this->assertCount( 1, $this->s3->batches() );
		$this->assertSame( 'Without', array_values( $this->s3->batches() )[0]['emails'][0]['subject'] );
		$failed = array_keys( array_filter( $outcome ) );
		$this->assertCount( 1, $failed );
		$this->assertStringContainsString( 'HTTP 503', $outcome[ $failed[0] ] );
		$this->assertFileExists( "{$this->spool_dir}/{$failed[0]}.batch.php" );
		$this->assertSame( str_repeat( 'x', 100 ), array_values( $this->plugin->spool()->load( $failed[0] )->attachments )[0] );
	}

	public function test_missing_attachment_fails_the_mail_like_core(): void {
		$missing = $this->temp_dir . '/gone.pdf';

		$this->assertFalse( wp_mail( array( 'a@example.net', self::MARKER ), 'Files', 'Body', '', array( $missing ) ) );

		$this->assertSame( 0, $this->plugin->queue()->count() );
		$this->assertCount( 1, $this->failures );
		$this->assertSame( 'wp_mail_failed', $this->failures[0]->get_error_code() );
		$this->assertStringContainsString( $missing, $this->failures[0]->get_error_message() );
		$this->assertSame( 'postbag_attachment_unreadable', $this->failures[0]->get_error_data()['postbag_reason'] );
		$this->assertSame( array( $missing ), $this->failures[0]->get_error_data()['attachments'] );
	}

	public function test_unreadable_attachment_fails_the_mail(): void {
		$this->assertFalse( wp_mail( array( 'a@example.net', self::MARKER ), 'Files', 'Body', '', array( $this->temp_dir ) ) );

		$this->assertSame( 'postbag_attachment_unreadable', $this->failures[0]->get_error_data()['postbag_reason'] );
	}

	public function test_attachment_name_with_a_line_break_is_refused(): void {
		$file = $this->temp_file( 'a.txt', 'a' );

		$this->assertFalse( wp_mail( array( 'a@example.net', self::MARKER ), 'Files', 'Body', '', array( "evil\r\nX-A: 1" => $file ) ) );
		$this->assertSame( 'postbag_header_injection', $this->failures[0]->get_error_data()['postbag_reason'] );
	}

	public function test_files_are_read_at_enqueue_time(): void {
		$file = $this->temp_file( 'temp.txt', 'before' );
		wp_mail( array( 'a@example.net', self::MARKER ), 'Files', 'Body', '', array( $file ) );
		unlink( $file ); // Callers often delete temporary files right after wp_mail().

		$this->assertSame( base64_encode( 'before' ), $this->flush_batches()[0]['emails'][0]['attachments'][0]['content_base64'] );
	}
}
