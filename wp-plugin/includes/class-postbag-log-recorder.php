<?php
/**
 * Writes the plugin's own events into the email log.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Listens to the plugin's actions: a mail queued (`postbag_mail_queued`),
 * its batch spooled, uploaded or sent through core; a notify job queued,
 * spooled, uploaded, failed or cancelled. Queued mails are held in memory
 * and written in multi-row INSERTs (a request queueing 100,000 mails makes
 * 500 queries, not 100,000), always before their batch's event updates them
 * and at the latest on `shutdown` before the flusher.
 */
final class Postbag_Log_Recorder {

	/** @var Postbag_Mail_Log */
	private $log;

	/** @var array[] Rows queued and not yet written. */
	private $pending = array();

	/**
	 * @param Postbag_Mail_Log $log The log.
	 */
	public function __construct( Postbag_Mail_Log $log ) {
		$this->log = $log;
	}

	/** Hook => [method, accepted args]. */
	const HOOKS = array(
		'postbag_mail_queued'              => array( 'mail_queued', 3 ),
		'postbag_batch_spooled'            => array( 'batch_spooled', 3 ),
		'postbag_batch_uploaded'           => array( 'batch_uploaded', 2 ),
		'postbag_batch_sent_synchronously' => array( 'batch_sent_synchronously', 2 ),
		'postbag_job_queued'               => array( 'job_queued', 2 ),
		'postbag_job_spooled'              => array( 'job_spooled', 2 ),
		'postbag_job_uploaded'             => array( 'job_uploaded', 3 ),
		'postbag_job_failed'               => array( 'job_failed', 2 ),
		'postbag_job_cancelled'            => array( 'job_cancelled', 2 ),
	);

	public function init(): void {
		foreach ( self::HOOKS as $hook => list( $method, $args ) ) {
			add_action( $hook, array( $this, $method ), 10, $args );
		}
		// Before the flusher (100): the rows exist when its batch events arrive.
		add_action( 'shutdown', array( $this, 'write_pending' ), 50 );
	}

	public function remove(): void {
		foreach ( self::HOOKS as $hook => list( $method, $args ) ) {
			remove_action( $hook, array( $this, $method ), 10 );
		}
		remove_action( 'shutdown', array( $this, 'write_pending' ), 50 );
	}

	/**
	 * @param string   $mail_id    Mail id.
	 * @param string[] $recipients To addresses.
	 * @param string   $subject    Subject.
	 */
	public function mail_queued( string $mail_id, array $recipients, string $subject ): void {
		$this->pending[] = array(
			'mail_id'    => $mail_id,
			'recipients' => $recipients,
			'subject'    => $subject,
		);
		if ( count( $this->pending ) >= Postbag_Mail_Log::INSERT_ROWS ) {
			$this->write_pending();
		}
	}

	public function write_pending(): void {
		if ( $this->pending ) {
			$this->log->record_queued( $this->pending );
			$this->pending = array();
		}
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $mail_ids Its mails.
	 * @param string   $reason   Why the upload failed.
	 */
	public function batch_spooled( string $batch_id, array $mail_ids, string $reason ): void {
		$this->write_pending();
		$this->log->set_statuses( $mail_ids, 'spooled', $reason, array( 'batch_id' => $batch_id ) );
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $mail_ids Its mails.
	 */
	public function batch_uploaded( string $batch_id, array $mail_ids ): void {
		$this->write_pending();
		$this->log->set_statuses(
			$mail_ids,
			'uploaded',
			'',
			array(
				'batch_id'    => $batch_id,
				'receipt_key' => Postbag_Log_Sync::receipt_key( $batch_id ),
			)
		);
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $sent     Mails core sent (S3 and the spool both failed).
	 */
	public function batch_sent_synchronously( string $batch_id, array $sent ): void {
		$this->write_pending();
		$this->log->set_statuses( $sent, 'sent', __( 'Sent through WordPress: neither the spool nor S3 took the batch.', 'postbag' ), array( 'batch_id' => $batch_id ) );
	}

	/**
	 * @param string $job_id Job id.
	 * @param array  $args   postbag_notify() arguments.
	 */
	public function job_queued( string $job_id, array $args ): void {
		$this->log->record_queued(
			array(
				array(
					'kind'       => 'job',
					'mail_id'    => $job_id,
					'batch_id'   => $job_id,
					'recipients' => array( self::describe_recipients( $args['recipients'] ?? null ) ),
					'subject'    => (string) ( $args['subject'] ?? '' ),
				),
			)
		);
	}

	/**
	 * What a job's recipients were, in words (the rows themselves are not kept).
	 *
	 * @param mixed $recipients postbag_notify()'s `recipients`.
	 */
	private static function describe_recipients( $recipients ): string {
		if ( is_array( $recipients ) && isset( $recipients['user_query'] ) ) {
			return __( 'users matching a query', 'postbag' );
		}
		if ( is_array( $recipients ) && isset( $recipients['callback'] ) && is_string( $recipients['callback'] ) ) {
			/* translators: %s: a function name */
			return sprintf( __( 'rows from %s()', 'postbag' ), $recipients['callback'] );
		}
		return is_array( $recipients ) && ! isset( $recipients['callback'] ) ? sprintf( /* translators: %d: a number */ _n( '%d recipient', '%d recipients', count( $recipients ), 'postbag' ), count( $recipients ) ) : __( 'a recipient list', 'postbag' );
	}

	/**
	 * @param string $job_id Job id.
	 * @param string $reason Why its upload waits.
	 */
	public function job_spooled( string $job_id, string $reason ): void {
		$this->log->set_status( $job_id, 'spooled', $reason );
	}

	/**
	 * @param string $job_id  Job id.
	 * @param int    $rows    Recipients uploaded.
	 * @param int    $dropped Rows dropped as invalid.
	 */
	public function job_uploaded( string $job_id, int $rows, int $dropped ): void {
		$this->log->set_status( $job_id, 'uploaded', '', array( 'counts' => compact( 'rows', 'dropped' ) ) );
	}

	/**
	 * @param string $job_id Job id.
	 * @param string $reason Why it was never sent.
	 */
	public function job_failed( string $job_id, string $reason ): void {
		$this->log->set_status( $job_id, 'failed', $reason );
	}

	/**
	 * @param string $job_id Job id.
	 * @param string $where  'spool' or 'bucket'.
	 */
	public function job_cancelled( string $job_id, string $where ): void {
		if ( 'spool' === $where ) {
			$this->log->set_status( $job_id, 'cancelled', __( 'Cancelled before upload: nobody got it.', 'postbag' ) );
			return;
		}
		// The sender stops at its next chunk; the sync reads its final counts and state.
		$this->log->set_status( $job_id, 'uploaded', __( 'Cancel requested: mails already sent stay sent.', 'postbag' ) );
	}
}
