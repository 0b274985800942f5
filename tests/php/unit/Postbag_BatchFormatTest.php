<?php
/**
 * The batch formats on their own: which class reads a batch, and a version 1
 * batch read back as it was built.
 *
 * @package Postbag\Tests
 */

/**
 * @covers Postbag_Batch_Format
 * @covers Postbag_Batch_Format_V1
 */
final class Postbag_BatchFormatTest extends PHPUnit\Framework\TestCase {

	/**
	 * A version 1 batch of two mails; the second has an inline and a separate attachment.
	 */
	private static function batch(): Postbag_Batch {
		$meta  = Postbag_Batch_Format_V1::meta( 'Blog <news@example.org>', 'text/html', 'UTF-8', array( 'r@example.org' ), array(), array( 'b@example.org' ), array( 'X-Campaign' => 'weekly' ) );
		$mails = array(
			Postbag_Batch_Format_V1::mail( 'm1', array( 'a@example.net' ), 'One', '<p>1</p>', 'text/html', array() ),
			Postbag_Batch_Format_V1::mail(
				'm2',
				array( 'b@example.net' ),
				'Two',
				'<p>2</p>',
				'text/html',
				array(
					Postbag_Batch_Format_V1::attachment( 'a.txt', 'text/plain', 'inline', true ),
					Postbag_Batch_Format_V1::attachment( 'b.bin', 'application/octet-stream', 'separate', false ),
				)
			),
		);
		return ( new Postbag_Batch_Format_V1() )->build( 'b1', array( 'url' => 'https://example.org' ), '2026-11-22T07:00:00Z', $meta, $mails, array( 1 => array( 1 => 'separate' ) ) );
	}

	public function test_a_batch_is_read_by_the_class_of_its_version(): void {
		$this->assertInstanceOf( Postbag_Batch_Format_V1::class, Postbag_Batch_Format::of( self::batch() ) );

		$this->expectException( UnexpectedValueException::class );
		$this->expectExceptionMessage( 'Batch b2 has an unknown format version.' );
		Postbag_Batch_Format::of( new Postbag_Batch( 'b2', 'queue/b2.json', '{"version":2}', array() ) );
	}

	public function test_wp_mail_args_give_back_what_was_built(): void {
		$batch = self::batch();

		$this->assertSame( 'queue/b1.json', $batch->key );
		$this->assertSame( array( 'm1', 'm2' ), $batch->mail_ids );
		$this->assertSame( array( 'queue/attachments/b1/m2/1' => 'separate' ), $batch->attachments );
		$args = ( new Postbag_Batch_Format_V1() )->wp_mail_args( $batch );
		$this->assertSame(
			array(
				'id'          => 'm2',
				'to'          => array( 'b@example.net' ),
				'subject'     => 'Two',
				'message'     => '<p>2</p>',
				'headers'     => array( 'From: Blog <news@example.org>', 'Content-Type: text/html; charset=UTF-8', 'Bcc: b@example.org', 'Reply-To: r@example.org', 'X-Campaign: weekly' ),
				'attachments' => array(
					array(
						'filename' => 'a.txt',
						'body'     => 'inline',
					),
					array(
						'filename' => 'b.bin',
						'body'     => 'separate',
					),
				),
			),
			$args[1]
		);
		$this->assertSame( array(), $args[0]['attachments'] );
	}

	public function test_a_subset_keeps_its_mails_and_their_attachment_objects_only(): void {
		$format = new Postbag_Batch_Format_V1();
		$subset = $format->subset( self::batch(), array( 'm1' ) );

		$this->assertSame( array( 'b1', 'queue/b1.json', array( 'm1' ), array() ), array( $subset->id, $subset->key, $subset->mail_ids, $subset->attachments ) );
		$this->assertSame( array( 'One' ), array_column( $format->wp_mail_args( $subset ), 'subject' ) );

		$missing = new Postbag_Batch( 'b1', 'queue/b1.json', self::batch()->body, array( 'm1', 'm2' ) );
		$this->assertNull( $format->wp_mail_args( $missing )[1]['attachments'][1]['body'], 'A separate attachment the batch lacks.' );
	}
}
