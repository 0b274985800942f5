<?php
/**
 * One batch file and the attachment objects it references.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * A serialized batch: its object key and JSON body, plus the bodies of large
 * attachments that must be in the bucket before it. What the body holds is
 * its format's business (Postbag_Batch_Format::of()).
 */
final class Postbag_Batch {

	/**
	 * Where every object goes: the sender starts on batch files under this
	 * prefix and reads attachments only from under its `attachments/`. Fixed
	 * on both sides, so the plugin's IAM policy names it too.
	 */
	const PREFIX = 'queue/';

	/** @var string Batch id, part of every mail's idempotency key. */
	public $id;

	/** @var string Object key, `queue/<id>.json`. */
	public $key;

	/** @var string The batch file (JSON). */
	public $body;

	/** @var string[] Ids of the mails in the batch, in order. */
	public $mail_ids;

	/** @var array<string, string> Object key => body of each large attachment. */
	public $attachments;

	/**
	 * @param string                $id          Batch id.
	 * @param string                $key         Object key.
	 * @param string                $body        JSON body.
	 * @param string[]              $mail_ids    Mail ids.
	 * @param array<string, string> $attachments Attachment object key => body.
	 */
	public function __construct( string $id, string $key, string $body, array $mail_ids, array $attachments = array() ) {
		$this->id          = $id;
		$this->key         = $key;
		$this->body        = $body;
		$this->mail_ids    = $mail_ids;
		$this->attachments = $attachments;
	}

	/**
	 * The object key of a batch file.
	 *
	 * @param string $id Batch id.
	 */
	public static function key_for( string $id ): string {
		return self::PREFIX . $id . '.json';
	}

	/**
	 * The object key of a large attachment, uploaded before its batch file.
	 *
	 * @param string $batch_id Batch id.
	 * @param string $mail_id  Id of the mail it belongs to.
	 * @param int    $n        Its index among the mail's attachments.
	 */
	public static function attachment_key( string $batch_id, string $mail_id, int $n ): string {
		return self::PREFIX . 'attachments/' . $batch_id . '/' . $mail_id . '/' . $n;
	}

	/** The decoded batch file. */
	public function payload(): array {
		return json_decode( $this->body, true, 512, JSON_THROW_ON_ERROR );
	}

	/**
	 * JSON as the sender reads it: UTF-8, unescaped; an invalid byte becomes
	 * U+FFFD rather than failing every mail of the batch.
	 *
	 * @param array $payload Batch file contents.
	 */
	public static function encode( array $payload ): string {
		return json_encode( $payload, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE | JSON_THROW_ON_ERROR );
	}
}
