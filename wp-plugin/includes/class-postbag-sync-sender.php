<?php
/**
 * Sends a spooled batch through core wp_mail().
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The last resort when S3 stays out of reach (opt-in through the
 * `postbag_sync_fallback_after` filter) or the spool cannot be written: each
 * mail of a batch goes through core wp_mail(), with Postbag's own interception
 * off, rebuilt from the batch's meta.
 */
final class Postbag_Sync_Sender {

	/** @var Postbag_Interceptor */
	private $interceptor;

	/**
	 * @param Postbag_Interceptor $interceptor Turned off while sending.
	 */
	public function __construct( Postbag_Interceptor $interceptor ) {
		$this->interceptor = $interceptor;
	}

	/**
	 * Sends each mail of a batch, then fires `postbag_batch_sent_synchronously`
	 * when core accepted any.
	 *
	 * @param Postbag_Batch $batch Batch to send.
	 * @return string[] Ids of the mails core accepted.
	 */
	public function send( Postbag_Batch $batch ): array {
		$payload = $batch->payload();
		$headers = self::headers( $payload['meta'] );
		$sent    = $this->interceptor->bypass(
			function () use ( $payload, $headers, $batch ): array {
				$sent = array();
				foreach ( $payload['emails'] as $mail ) {
					if ( $this->send_one( $mail, $headers, $batch->attachments ) ) {
						$sent[] = $mail['id'];
					}
				}
				return $sent;
			}
		);
		if ( $sent ) {
			/**
			 * Fires when mails of a batch went out through core wp_mail(): a
			 * spooled batch past `postbag_sync_fallback_after`, or one the
			 * spool could not take.
			 *
			 * @param string   $batch_id Batch id.
			 * @param string[] $mail_ids Mails sent.
			 */
			do_action( 'postbag_batch_sent_synchronously', $batch->id, $sent );
		}
		return $sent;
	}

	/**
	 * The wp_mail() headers that give back the batch's meta.
	 *
	 * @param array $meta Batch meta.
	 * @return string[]
	 */
	public static function headers( array $meta ): array {
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

	/**
	 * @param array                 $mail        One entry of `emails[]`.
	 * @param string[]              $headers     See headers().
	 * @param array<string, string> $attachments Bodies of large attachments by key.
	 */
	private function send_one( array $mail, array $headers, array $attachments ): bool {
		$dir = get_temp_dir() . 'postbag-' . bin2hex( random_bytes( 8 ) );
		try {
			$paths = self::write_attachments( $dir, $mail['attachments'] ?? array(), $attachments );
			return null !== $paths && wp_mail( $mail['to'], $mail['subject'], $mail['html'] ?? $mail['text'], $headers, $paths );
		} finally {
			self::remove_dir( $dir );
		}
	}

	/**
	 * Writes attachments to private temporary files, named as in the batch.
	 *
	 * @param string $dir         Temporary directory to create.
	 * @param array  $entries     The mail's attachment entries.
	 * @param array  $attachments Bodies of large attachments by key.
	 * @return string[]|null File name => path (names as keys, as WordPress 6.2+ reads them), or null when a body is missing.
	 */
	private static function write_attachments( string $dir, array $entries, array $attachments ): ?array {
		$paths = array();
		foreach ( $entries as $n => $entry ) {
			$body = isset( $entry['s3_key'] ) ? ( $attachments[ $entry['s3_key'] ] ?? false ) : base64_decode( $entry['content_base64'], true );
			if ( false === $body || ( ! is_dir( "$dir/$n" ) && ! mkdir( "$dir/$n", 0700, true ) ) ) {
				return null;
			}
			$path = "$dir/$n/" . sanitize_file_name( $entry['filename'] );
			if ( false === file_put_contents( $path, $body ) ) {
				return null;
			}
			if ( isset( $paths[ $entry['filename'] ] ) ) {
				$paths[] = $path; // Two files of one name: keep both, the second named by its path.
			} else {
				$paths[ $entry['filename'] ] = $path;
			}
		}
		return $paths;
	}

	/**
	 * @param string $dir Temporary directory of one mail.
	 */
	private static function remove_dir( string $dir ): void {
		foreach ( glob( $dir . '/*/*' ) ?: array() as $file ) {
			unlink( $file );
		}
		foreach ( glob( $dir . '/*' ) ?: array() as $sub ) {
			rmdir( $sub );
		}
		if ( is_dir( $dir ) ) {
			rmdir( $dir );
		}
	}
}
