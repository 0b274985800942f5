<?php
/**
 * A stand-in for Postbag_S3_Client that never touches the network.
 *
 * @package Postbag\Tests
 */

/**
 * Records what would be uploaded and reads it back; fails the keys a test
 * chooses, for uploads and reads alike.
 */
final class Postbag_Fake_S3_Client {

	/** @var array<string, array{body: string, content_type: string}> Objects "in the bucket". */
	public $objects = array();

	/** @var string[][] Keys of each put_objects() call, in order. */
	public $calls = array();

	/** @var string|null Regex of keys that fail; null: none. */
	public $fail_pattern;

	/** @var int HTTP status of a failure (0: network error). */
	public $fail_status = 503;

	/** @var string Error message of a failure. */
	public $fail_error = 'Service Unavailable';

	/** @var int What reading a missing object answers: 404, or 403 for credentials that may not list the bucket (WordPress's). */
	public $missing_status = 404;

	/** @var string[] Keys of each get_object() call, in order. */
	public $reads = array();

	/**
	 * @param string|null $fail_pattern Regex of keys that fail, e.g. '/./' for all.
	 */
	public function __construct( ?string $fail_pattern = null ) {
		$this->fail_pattern = $fail_pattern;
	}

	/**
	 * Same contract as Postbag_S3_Client::put_objects().
	 *
	 * @param array<string, string> $bodies       Key => body.
	 * @param string                $content_type Content type.
	 * @return array<string, Postbag_S3_Result>
	 */
	public function put_objects( array $bodies, string $content_type = 'application/json' ): array {
		$this->calls[] = array_keys( $bodies );
		$results       = array();
		foreach ( $bodies as $key => $body ) {
			if ( null !== $this->fail_pattern && preg_match( $this->fail_pattern, (string) $key ) ) {
				// Worded like Postbag_S3_Client's errors: the status leads when there is one.
				$error           = $this->fail_status ? sprintf( 'HTTP %d %s', $this->fail_status, $this->fail_error ) : $this->fail_error;
				$results[ $key ] = new Postbag_S3_Result( false, $this->fail_status, $error );
				continue;
			}
			$this->objects[ $key ] = array(
				'body'         => $body,
				'content_type' => $content_type,
			);
			$results[ $key ]       = new Postbag_S3_Result( true, 200 );
		}
		return $results;
	}

	/**
	 * Same contract as Postbag_S3_Client::get_object().
	 *
	 * @param string $key Object key.
	 */
	public function get_object( string $key ): Postbag_S3_Result {
		$this->reads[] = $key;
		if ( null !== $this->fail_pattern && preg_match( $this->fail_pattern, $key ) ) {
			return new Postbag_S3_Result( false, $this->fail_status, $this->fail_status ? sprintf( 'HTTP %d %s', $this->fail_status, $this->fail_error ) : $this->fail_error );
		}
		if ( ! isset( $this->objects[ $key ] ) ) {
			$code = 403 === $this->missing_status ? 'AccessDenied: Access Denied' : 'NoSuchKey: The specified key does not exist.';
			return new Postbag_S3_Result( false, $this->missing_status, sprintf( 'HTTP %d %s', $this->missing_status, $code ) );
		}
		return new Postbag_S3_Result( true, 200, '', $this->objects[ $key ]['body'] );
	}

	/**
	 * Decoded batch files in the bucket.
	 *
	 * @return array<string, array> Key => batch.
	 */
	public function batches(): array {
		$batches = array();
		foreach ( $this->objects as $key => $object ) {
			if ( '.json' === substr( $key, -5 ) ) {
				$batches[ $key ] = json_decode( $object['body'], true );
			}
		}
		return $batches;
	}
}
