<?php
/**
 * Version 2 of the bucket format: a notify job (manifest + part files).
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The layout of a notify job (docs/job-format.md, checked against
 * fixtures/job-v2.schema.json): `jobs/<job_id>/part-<n>.ndjson.gz`, gzip
 * files of one recipient object per line, and `jobs/<job_id>/manifest.json`,
 * uploaded last, naming every part with its rows, size and SHA-256. No other
 * class knows these keys or fields.
 */
final class Postbag_Job_Format_V2 {

	const VERSION = 2;

	/** Where every job's objects go; the plugin's IAM policy names it too. */
	const PREFIX = 'jobs/';

	/** Rows per part file: small enough to build in bounded memory, well under the schema's 100,000. */
	const PART_ROWS = 10000;

	/** The schema's limits the plugin checks at call time. */
	const MAX_SUBJECT_CHARS = 2000;
	const MAX_BODY_CHARS    = 1048576;
	const MAX_HEADERS       = 15;
	const MAX_NAME_CHARS    = 256;
	const MAX_EMAIL_CHARS   = 254;

	/** What JSON written for the sender looks like: UTF-8 as is, bad bytes as U+FFFD. */
	const JSON_FLAGS = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE;

	/** What a job id may be (the schema's `id`); \z, for `$` would let a trailing newline through. */
	const JOB_ID_PATTERN = '/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\z/';

	/**
	 * Whether `$job_id` can be a job's id (and so a folder of the bucket's `jobs/`).
	 *
	 * @param mixed $job_id Anything a caller passed.
	 */
	public static function is_job_id( $job_id ): bool {
		return is_string( $job_id ) && 1 === preg_match( self::JOB_ID_PATTERN, $job_id );
	}

	/**
	 * The sender's progress document (docs/job-format.md, "Progress").
	 *
	 * @param string $job_id Job id.
	 */
	public static function status_key( string $job_id ): string {
		return self::PREFIX . $job_id . '/status.json';
	}

	/**
	 * The object whose presence (any body) stops the sender before its next chunk.
	 *
	 * @param string $job_id Job id.
	 */
	public static function cancel_key( string $job_id ): string {
		return self::PREFIX . $job_id . '/cancel';
	}

	/**
	 * @param string $job_id Job id.
	 */
	public static function manifest_key( string $job_id ): string {
		return self::PREFIX . $job_id . '/manifest.json';
	}

	/**
	 * @param string $job_id Job id.
	 * @param int    $n      Part number, from 1.
	 */
	public static function part_key( string $job_id, int $n ): string {
		return sprintf( '%s%s/part-%05d.ndjson.gz', self::PREFIX, $job_id, $n );
	}

	/**
	 * A recipient row as a part file holds it, or why it cannot be sent.
	 * Called for every row: the common case (ASCII, valid) costs a few
	 * function calls.
	 *
	 * @param mixed $row `email`, optional `name`, `user_id`, `vars`.
	 * @return array|string The row to write, or the reason it is left out.
	 */
	public static function recipient( $row ) {
		if ( ! is_array( $row ) || ! isset( $row['email'] ) || ! is_string( $row['email'] ) ) {
			return 'not a row with an email';
		}
		$email = trim( $row['email'] );
		if ( strlen( $email ) > self::MAX_EMAIL_CHARS || ! is_email( $email ) ) {
			return sprintf( 'invalid address %s', substr( $email, 0, 80 ) );
		}
		$out  = array( 'email' => $email );
		$name = $row['name'] ?? '';
		if ( '' !== $name && null !== $name ) {
			if ( ! is_string( $name ) || mb_strlen( $name ) > self::MAX_NAME_CHARS ) {
				return sprintf( 'the name of %s is not text of at most %d characters', $email, self::MAX_NAME_CHARS );
			}
			try {
				Postbag_Mail_Rules::header_value( 'name', $name );
			} catch ( Postbag_Mail_Exception $e ) {
				return sprintf( '%s: %s', $email, $e->getMessage() );
			}
			$out['name'] = $name;
		}
		if ( isset( $row['user_id'] ) ) {
			$user_id = filter_var( $row['user_id'], FILTER_VALIDATE_INT, array( 'options' => array( 'min_range' => 1 ) ) );
			if ( false === $user_id ) {
				return sprintf( 'the user_id of %s is not a positive integer', $email );
			}
			$out['user_id'] = $user_id;
		}
		if ( ! empty( $row['vars'] ) ) {
			if ( ! is_array( $row['vars'] ) || self::is_list( $row['vars'] ) ) {
				return sprintf( 'the vars of %s are not a map of names to values', $email );
			}
			$out['vars'] = $row['vars'];
		}
		return $out;
	}

	/**
	 * Whether a PHP array would become a JSON array (array_is_list() is PHP 8.1+).
	 *
	 * @param array $value An array.
	 */
	public static function is_list( array $value ): bool {
		return array() === $value || array_keys( $value ) === range( 0, count( $value ) - 1 );
	}

	/**
	 * One line of a part file.
	 *
	 * @param array $row A row recipient() returned.
	 * @return string|false False when it cannot be encoded (too deep, a float that is not finite).
	 */
	public static function line( array $row ) {
		$json = json_encode( $row, self::JSON_FLAGS );
		return false === $json ? false : $json . "\n";
	}

	/**
	 * The manifest, once every part is stored.
	 *
	 * @param array  $record   The job record (see Postbag_Jobs::notify()).
	 * @param array  $parts    Each part's `key`, `rows`, `bytes`, `sha256`, in order.
	 * @param int    $rows     Rows in all parts.
	 * @return string JSON.
	 */
	public static function manifest( array $record, array $parts, int $rows ): string {
		$manifest = array(
			'version'     => self::VERSION,
			'kind'        => 'notify',
			'job_id'      => $record['job_id'],
			'site'        => $record['site'],
			'created_at'  => $record['created_at'],
			// Absent from records written before scheduled sends: now.
			'send_at'     => $record['send_at'] ?? null,
			'meta'        => $record['meta'],
			'template'    => $record['template'],
			// Decoded as objects, so `{}` anywhere in the context stays an object.
			'context'     => json_decode( $record['context_json'], false, 512, JSON_THROW_ON_ERROR ),
			'attachments' => $record['attachments'],
			'recipients'  => $rows,
			'parts'       => array_map(
				static function ( array $part ): array {
					return array(
						'key'    => $part['key'],
						'rows'   => $part['rows'],
						'bytes'  => $part['bytes'],
						'sha256' => $part['sha256'],
					);
				},
				$parts
			),
		);
		if ( isset( $record['send_between'] ) ) {
			$manifest = array_slice( $manifest, 0, 6 ) + array( 'send_between' => $record['send_between'] ) + $manifest;
		}
		return json_encode( $manifest, self::JSON_FLAGS | JSON_PRETTY_PRINT | JSON_THROW_ON_ERROR );
	}

	/**
	 * The object that moves a held job to another time (docs/job-format.md, "Scheduled jobs").
	 *
	 * @param string $job_id Job id.
	 */
	public static function schedule_key( string $job_id ): string {
		return self::PREFIX . $job_id . '/schedule.json';
	}
}
