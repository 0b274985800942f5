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
 * `bool $ok`, `int $status`, `string $error`) and `get_object( string $key )`
 * (one such result, with `string $body`), so tests pass a fake.
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
	 * @return array<string, string> Batch id => why it was not uploaded; a batch absent from it was.
	 */
	public function upload( array $batches ): array {
		$failures = array();
		if ( ! $batches ) {
			return $failures;
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
				$failure = self::first_failure( $results, array_keys( $batch->attachments ) );
				if ( null === $failure ) {
					$files[ $batch->key ] = $batch->body;
				} else {
					$failures[ $batch->id ] = $failure;
				}
			}
			$results = $files ? $client->put_objects( $files, 'application/json' ) : array();
			foreach ( $batches as $batch ) {
				$failure = isset( $files[ $batch->key ] ) ? self::first_failure( $results, array( $batch->key ) ) : null;
				if ( null !== $failure ) {
					$failures[ $batch->id ] = $failure;
				}
			}
		} catch ( Throwable $e ) {
			// The one place that catches everything: no error of the client may lose mail.
			foreach ( $batches as $batch ) {
				if ( ! isset( $failures[ $batch->id ] ) ) {
					$failures[ $batch->id ] = sprintf( 'upload failed: %s', $e->getMessage() );
				}
			}
		}
		return $failures;
	}

	/**
	 * Puts objects of one content type in parallel (a notify job's parts, its manifest).
	 *
	 * @param array<string, string> $bodies       Key => body.
	 * @param string                $content_type Their Content-Type.
	 * @return array<string, string> Key => why it was not stored; a key absent from it was.
	 */
	public function put( array $bodies, string $content_type ): array {
		if ( ! $bodies ) {
			return array();
		}
		$failures = array();
		try {
			$results = $this->client()->put_objects( $bodies, $content_type );
			foreach ( array_keys( $bodies ) as $key ) {
				$failure = self::first_failure( $results, array( (string) $key ) );
				if ( null !== $failure ) {
					$failures[ $key ] = $failure;
				}
			}
		} catch ( Throwable $e ) {
			// As in upload(): no error of the client may lose a job.
			foreach ( array_keys( $bodies ) as $key ) {
				$failures[ $key ] = sprintf( 'upload failed: %s', $e->getMessage() );
			}
		}
		return $failures;
	}

	/**
	 * Reads one small object (a notify job's status).
	 *
	 * @param string $key Object key.
	 * @return Postbag_S3_Result Failed, with the reason, for any error of the client too.
	 */
	public function get( string $key ): Postbag_S3_Result {
		try {
			return $this->client()->get_object( $key );
		} catch ( Throwable $e ) {
			// As in put(): the client's errors are answers (no bucket configured, a bad key).
			return new Postbag_S3_Result( false, 0, sprintf( 'read failed: %s', $e->getMessage() ) );
		}
	}

	/**
	 * @param array<string, object> $results Key => result from put_objects().
	 * @param string[]              $keys    Keys that must have succeeded.
	 * @return string|null The first failure, or null when all succeeded.
	 */
	private static function first_failure( array $results, array $keys ): ?string {
		foreach ( $keys as $key ) {
			$result = $results[ $key ] ?? null;
			if ( null === $result ) {
				return sprintf( '%s: no upload result', $key );
			}
			if ( ! $result->ok ) {
				return sprintf( '%s: %s', $key, $result->error );
			}
		}
		return null;
	}

	private function client(): object {
		if ( null === $this->client ) {
			$this->client = ( $this->client_factory )();
		}
		return $this->client;
	}
}
