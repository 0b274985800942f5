<?php
/**
 * Version 1 of the batch file: mails that share their meta.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The layout the plugin writes (docs/batch-format.md, checked against
 * fixtures/batch-v1.schema.json): one `meta` (sender, content type, charset,
 * Cc/Bcc/Reply-To, custom headers) shared by every mail in `emails`; small
 * attachments inline as base64, large ones as separate objects named by
 * `s3_key`. The interceptor shapes mails with meta(), mail() and attachment(),
 * the queue cuts them into batch files with build(); the rest of the plugin
 * reads them back through Postbag_Batch_Format.
 */
final class Postbag_Batch_Format_V1 extends Postbag_Batch_Format {

	const VERSION = 1;

	/** The content types a mail of this format can have. */
	const CONTENT_TYPES = array( 'text/plain', 'text/html' );

	/**
	 * The meta a batch's mails share.
	 *
	 * @param string                $from         Sender mailbox.
	 * @param string                $content_type `text/plain` or `text/html`.
	 * @param string                $charset      Charset of the outgoing parts.
	 * @param string[]              $reply_to     Reply-To mailboxes.
	 * @param string[]              $cc           Cc mailboxes.
	 * @param string[]              $bcc          Bcc mailboxes.
	 * @param array<string, string> $headers      Custom headers, name => value, in order.
	 */
	public static function meta( string $from, string $content_type, string $charset, array $reply_to, array $cc, array $bcc, array $headers ): array {
		$meta = array(
			'from'         => $from,
			'content_type' => $content_type,
			'charset'      => $charset,
		) + array_filter(
			array(
				'reply_to' => $reply_to,
				'cc'       => $cc,
				'bcc'      => $bcc,
			)
		);
		foreach ( $headers as $name => $value ) {
			$meta['headers'][] = array(
				'name'  => $name,
				'value' => $value,
			);
		}
		return $meta;
	}

	/**
	 * One mail, as it waits in the queue.
	 *
	 * @param string  $id           Mail id, minted when it was queued.
	 * @param array   $to           To mailboxes.
	 * @param string  $subject      Subject.
	 * @param string  $message      Body.
	 * @param string  $content_type The batch's content type: says whether the body is HTML.
	 * @param array[] $attachments  See attachment().
	 */
	public static function mail( string $id, array $to, string $subject, string $message, string $content_type, array $attachments ): array {
		$mail = array(
			'id'      => $id,
			'to'      => $to,
			'subject' => $subject,
			( 'text/html' === $content_type ? 'html' : 'text' ) => $message,
		);
		if ( $attachments ) {
			$mail['attachments'] = $attachments;
		}
		return $mail;
	}

	/**
	 * One attachment: inline, or separate (its body goes to build() and the
	 * entry gets its `s3_key` there).
	 *
	 * @param string $filename     Name shown to the recipient.
	 * @param string $content_type MIME type.
	 * @param string $body         Contents.
	 * @param bool   $inline       Whether it travels inside the batch file.
	 */
	public static function attachment( string $filename, string $content_type, string $body, bool $inline ): array {
		$entry = array(
			'filename'     => $filename,
			'content_type' => $content_type,
		);
		if ( $inline ) {
			$entry['content_base64'] = base64_encode( $body );
		} else {
			$entry['size'] = strlen( $body );
		}
		return $entry;
	}

	/**
	 * The batch file of mails queued together.
	 *
	 * @param string                         $id         Batch id.
	 * @param array                          $site       `url` and `blog_id` of the site that sent them.
	 * @param string                         $created_at RFC 3339 UTC time.
	 * @param array                          $meta       See meta().
	 * @param array<int, array>              $mails      See mail(), in order.
	 * @param array<int, array<int, string>> $blobs      Bodies of separate attachments, by the key of
	 *                                                   their mail in `$mails` and their index in it.
	 * @param string|null                    $send_at    When the sender sends them (UTC RFC 3339); null: now.
	 */
	public function build( string $id, array $site, string $created_at, array $meta, array $mails, array $blobs, ?string $send_at = null ): Postbag_Batch {
		$emails      = array();
		$attachments = array();
		foreach ( $mails as $index => $mail ) {
			foreach ( $blobs[ $index ] ?? array() as $n => $blob ) {
				$key                                 = Postbag_Batch::attachment_key( $id, $mail['id'], $n );
				$mail['attachments'][ $n ]['s3_key'] = $key;
				$attachments[ $key ]                 = $blob;
			}
			$emails[] = $mail;
		}
		$header = array(
			'version'    => self::VERSION,
			'batch_id'   => $id,
			'site'       => $site,
			'created_at' => $created_at,
		);
		if ( null !== $send_at ) {
			$header['send_at'] = $send_at; // Absent for now, as before scheduled sends.
		}
		$body = Postbag_Batch::encode(
			$header + array(
				'meta'   => $meta,
				'emails' => $emails,
			)
		);
		return new Postbag_Batch( $id, Postbag_Batch::key_for( $id ), $body, array_column( $emails, 'id' ), $attachments );
	}

	/**
	 * @param Postbag_Batch $batch    The batch.
	 * @param string[]      $mail_ids Mails to keep.
	 */
	public function subset( Postbag_Batch $batch, array $mail_ids ): Postbag_Batch {
		$payload           = $batch->payload();
		$payload['emails'] = array_values(
			array_filter(
				$payload['emails'],
				static function ( array $mail ) use ( $mail_ids ): bool {
					return in_array( $mail['id'], $mail_ids, true );
				}
			)
		);
		$kept_keys         = array();
		foreach ( $payload['emails'] as $mail ) {
			foreach ( $mail['attachments'] ?? array() as $attachment ) {
				if ( isset( $attachment['s3_key'] ) ) {
					$kept_keys[ $attachment['s3_key'] ] = true;
				}
			}
		}
		return new Postbag_Batch(
			$batch->id,
			$batch->key,
			Postbag_Batch::encode( $payload ),
			array_column( $payload['emails'], 'id' ),
			array_intersect_key( $batch->attachments, $kept_keys )
		);
	}

	/**
	 * @param Postbag_Batch $batch The batch.
	 */
	public function wp_mail_args( Postbag_Batch $batch ): array {
		$payload = $batch->payload();
		$headers = self::headers( $payload['meta'] );
		$args    = array();
		foreach ( $payload['emails'] as $mail ) {
			$attachments = array();
			foreach ( $mail['attachments'] ?? array() as $entry ) {
				$body          = isset( $entry['s3_key'] ) ? ( $batch->attachments[ $entry['s3_key'] ] ?? false ) : base64_decode( $entry['content_base64'], true );
				$attachments[] = array(
					'filename' => $entry['filename'],
					'body'     => false === $body ? null : $body,
				);
			}
			$args[] = array(
				'id'          => $mail['id'],
				'to'          => $mail['to'],
				'subject'     => $mail['subject'],
				'message'     => $mail['html'] ?? $mail['text'],
				'headers'     => $headers,
				'attachments' => $attachments,
			);
		}
		return $args;
	}

	/**
	 * The wp_mail() headers that give back the batch's meta.
	 *
	 * @param array $meta Batch meta.
	 * @return string[]
	 */
	private static function headers( array $meta ): array {
		$headers = array(
			'From: ' . $meta['from'],
			sprintf( 'Content-Type: %s; charset=%s', $meta['content_type'] ?? 'text/plain', $meta['charset'] ?? 'UTF-8' ),
		);
		foreach ( array(
			'cc'       => 'Cc',
			'bcc'      => 'Bcc',
			'reply_to' => 'Reply-To',
		) as $field => $name ) {
			if ( ! empty( $meta[ $field ] ) ) {
				$headers[] = $name . ': ' . implode( ', ', $meta[ $field ] );
			}
		}
		foreach ( $meta['headers'] ?? array() as $header ) {
			$headers[] = $header['name'] . ': ' . $header['value'];
		}
		return $headers;
	}
}
