<?php
/**
 * Whether the bucket answers a real signed request.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Reads `status/account.json` (a key the plugin may read, docs/deploy.md)
 * with the credentials uploads use, and keeps the answer for a minute so
 * Site Health and the Postbag screen stay fast. Reachable: the object, a
 * 404 NoSuchKey, or a 403 AccessDenied (S3 hides a missing object from a
 * reader that may not list the bucket; the signature was accepted). Not
 * reachable: no answer, a 5xx, a rejected key or signature, no such bucket.
 */
final class Postbag_Bucket_Probe {

	/** What is read. */
	const KEY = 'status/account.json';

	/** Seconds an answer is kept. */
	const CACHE_SECONDS = 60;

	/** Site transient holding the last answer. */
	const TRANSIENT = 'postbag_bucket_probe';

	/** S3 error codes that still prove the bucket answered our signature. */
	const REACHABLE_CODES = array( 'NoSuchKey', 'AccessDenied' );

	/** @var callable(): object */
	private $client;

	/** @var string Identifies the bucket and endpoint: a changed setting is probed again. */
	private $target;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param callable(): object $client Makes the S3 client (Postbag_S3_Client or a fake); may throw RuntimeException.
	 * @param string             $target Bucket and endpoint, e.g. "my-bucket@https://s3...".
	 * @param callable|null      $clock  Unix time; default time().
	 */
	public function __construct( callable $client, string $target, ?callable $clock = null ) {
		$this->client = $client;
		$this->target = $target;
		$this->clock  = $clock ?? 'time';
	}

	/**
	 * The last answer if it is fresh, else a new one.
	 *
	 * @param bool $fresh Ignore the cached answer.
	 * @return array{reachable: bool, status: int, error: string, checked_at: int}
	 */
	public function check( bool $fresh = false ): array {
		$cached = get_site_transient( self::TRANSIENT );
		if ( ! $fresh && is_array( $cached ) && ( $cached['target'] ?? '' ) === $this->target ) {
			return $cached['answer'];
		}
		$answer = $this->probe();
		set_site_transient(
			self::TRANSIENT,
			array(
				'target' => $this->target,
				'answer' => $answer,
			),
			self::CACHE_SECONDS
		);
		return $answer;
	}

	/** @return array{reachable: bool, status: int, error: string, checked_at: int} */
	private function probe(): array {
		$now = (int) ( $this->clock )();
		try {
			$result = ( $this->client )()->get_object( self::KEY );
		} catch ( RuntimeException $e ) {
			return self::answer( false, 0, $e->getMessage(), $now );
		}
		if ( $result->ok ) {
			return self::answer( true, $result->status, '', $now );
		}
		$code = preg_match( '/^HTTP \d+ (\w+)/', $result->error, $match ) ? $match[1] : '';
		return self::answer( in_array( $code, self::REACHABLE_CODES, true ), $result->status, $result->error, $now );
	}

	/**
	 * @param bool   $reachable  Whether the bucket answered the signature.
	 * @param int    $status     HTTP status, 0 for none.
	 * @param string $error      Why not (S3's code and message, or curl's).
	 * @param int    $checked_at Unix time.
	 */
	private static function answer( bool $reachable, int $status, string $error, int $checked_at ): array {
		return array(
			'reachable'  => $reachable,
			'status'     => $status,
			'error'      => $error,
			'checked_at' => $checked_at,
		);
	}
}
