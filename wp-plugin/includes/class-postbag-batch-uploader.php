<?php
/**
 * Uploads batches and their attachments in parallel.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Two parallel waves through the S3 client: every large attachment first,
 * then the batch files whose attachments all arrived (the sender starts on a
 * batch as soon as it lands, so what it references must already be there).
 *
 * The client is any object with Postbag_S3_Client's
 * `put_objects( array $bodies, string $content_type ): array` (key => result with
 * `bool $ok`, `int $status`, `string $error`), so tests pass a fake.
 */
final class Postbag_Batch_Uploader {

	/** @var callable(): object Makes the S3 client on first use. */
	private $client_factory;

	/** @var object|null */
	private $client;

	/**
	 * @param callable(): object $client_factory Returns the S3 client; called once, on the first upload.
	 */
	public function __construct( callable $client_factory ) {
		$this->client_factory = $client_factory;
	}

	/**
	 * @param Postbag_Batch[] $batches Batches to upload.
	 * @return array<string, string> Batch id => '' when uploaded, else why not.
	 */
	public function upload( array $batches ): array {
		$outcome = array();
		if ( ! $batches ) {
			return $outcome;
		}
		try {
			$client      = $this->client();
			$attachments = array();
			foreach ( $batches as $batch ) {
				$attachments += $batch->attachments;
			}
			$results = $attachments ? $client->put_objects( $attachments, 'application/octet-stream' ) : array();
			$files   = array();
			foreach ( $batches as $batch ) {
				$outcome[ $batch->id ] = self::first_failure( $results, array_keys( $batch->attachments ) );
				if ( '' === $outcome[ $batch->id ] ) {
					$files[ $batch->key ] = $batch->body;
				}
			}
			$results = $files ? $client->put_objects( $files, 'application/json' ) : array();
			foreach ( $batches as $batch ) {
				if ( isset( $files[ $batch->key ] ) ) {
					$outcome[ $batch->id ] = self::first_failure( $results, array( $batch->key ) );
				}
			}
		} catch ( Throwable $e ) {
			// The one place that catches everything: no error of the client may lose mail.
			foreach ( $batches as $batch ) {
				if ( '' === ( $outcome[ $batch->id ] ?? '' ) ) {
					$outcome[ $batch->id ] = sprintf( 'upload failed: %s', $e->getMessage() );
				}
			}
		}
		return $outcome;
	}

	/**
	 * @param array<string, object> $results Key => result from put_objects().
	 * @param string[]              $keys    Keys that must have succeeded.
	 * @return string '' when all did, else the first failure.
	 */
	private static function first_failure( array $results, array $keys ): string {
		foreach ( $keys as $key ) {
			$result = $results[ $key ] ?? null;
			if ( null === $result ) {
				return sprintf( '%s: no upload result', $key );
			}
			if ( ! $result->ok ) {
				return sprintf( '%s: %s', $key, $result->error );
			}
		}
		return '';
	}

	private function client(): object {
		if ( null === $this->client ) {
			$this->client = ( $this->client_factory )();
		}
		return $this->client;
	}
}
