<?php
/**
 * What every batch format offers the classes that handle its batches.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * A batch format owns its layout (docs/batch-format.md): no other class
 * indexes a batch file. Each version is one subclass in this folder, which
 * also builds its batch files for whoever writes them (the queue writes
 * version 1); the spool and the fallback through core read any batch through
 * the two methods below.
 */
abstract class Postbag_Batch_Format {

	/** The `version` of a batch file => the class that owns it. */
	const VERSIONS = array(
		1 => 'Postbag_Batch_Format_V1',
	);

	/**
	 * The format a batch was written in.
	 *
	 * @param Postbag_Batch $batch A batch.
	 * @throws UnexpectedValueException For a version this plugin does not know.
	 */
	public static function of( Postbag_Batch $batch ): self {
		$version = $batch->payload()['version'] ?? null;
		if ( ! is_int( $version ) || ! isset( self::VERSIONS[ $version ] ) ) {
			throw new UnexpectedValueException( sprintf( 'Batch %s has an unknown format version.', $batch->id ) );
		}
		$class = self::VERSIONS[ $version ];
		return new $class();
	}

	/**
	 * A copy holding only some of the mails and the attachment objects they
	 * reference (those still to send after a partial fallback).
	 *
	 * @param Postbag_Batch $batch    The batch.
	 * @param string[]      $mail_ids Mails to keep.
	 */
	abstract public function subset( Postbag_Batch $batch, array $mail_ids ): Postbag_Batch;

	/**
	 * Each mail of the batch as core wp_mail() takes it.
	 *
	 * @param Postbag_Batch $batch The batch.
	 * @return array<int, array{id: string, to: string[], subject: string, message: string, headers: string[], attachments: array<int, array{filename: string, body: ?string}>}>
	 *         An attachment's body is null when the batch lacks it.
	 */
	abstract public function wp_mail_args( Postbag_Batch $batch ): array;
}
