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
 * off, as the batch's format gives it back.
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
		$mails = Postbag_Batch_Format::of( $batch )->wp_mail_args( $batch );
		$sent  = $this->interceptor->bypass(
			function () use ( $mails ): array {
				$sent = array();
				foreach ( $mails as $mail ) {
					if ( $this->send_one( $mail ) ) {
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
	 * @param array $mail One mail, see Postbag_Batch_Format::wp_mail_args().
	 */
	private function send_one( array $mail ): bool {
		$dir = get_temp_dir() . 'postbag-' . bin2hex( random_bytes( 8 ) );
		try {
			$paths = self::write_attachments( $dir, $mail['attachments'] );
			return null !== $paths && wp_mail( $mail['to'], $mail['subject'], $mail['message'], $mail['headers'], $paths );
		} finally {
			self::remove_dir( $dir );
		}
	}

	/**
	 * Writes attachments to private temporary files, named as in the batch.
	 *
	 * @param string $dir         Temporary directory to create.
	 * @param array  $attachments The mail's attachments: `filename` and `body` each.
	 * @return string[]|null File name => path (names as keys, as WordPress 6.2+ reads them), or null when a body is missing.
	 */
	private static function write_attachments( string $dir, array $attachments ): ?array {
		$paths = array();
		foreach ( $attachments as $n => $attachment ) {
			if ( null === $attachment['body'] || ( ! is_dir( "$dir/$n" ) && ! mkdir( "$dir/$n", 0700, true ) ) ) {
				return null;
			}
			$path = "$dir/$n/" . sanitize_file_name( $attachment['filename'] );
			if ( false === file_put_contents( $path, $attachment['body'] ) ) {
				return null;
			}
			if ( isset( $paths[ $attachment['filename'] ] ) ) {
				$paths[] = $path; // Two files of one name: keep both, the second named by its path.
			} else {
				$paths[ $attachment['filename'] ] = $path;
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
