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
 * spooled, uploaded, failed or cancelled.
 *
 * A request's mails are held in memory, their batch's event (which the
 * flusher fires after the response) sets their status there, and they are
 * written in INSERTs of up to Postbag_Mail_Log::INSERT_ROWS rows once
 * FLUSH_ROWS wait or the request ends: on the test MariaDB a row costs
 * ~75 µs in 200-row statements and ~47 µs in 1,000-row ones, against ~40 µs
 * to queue the mail, and one UPDATE per batch would cost more than both. So
 * no visitor waits for the log, and `postbag_mail_status_changed` fires for
 * changes to rows already written (the sync's, a later retry's), not for
 * the queued → uploaded of the request itself. A worker killed between the
 * response and its uploads leaves its batches to the spool's retry but its
 * rows unwritten: those mails are not logged.
 */
final class Postbag_Log_Recorder {

	/** @var Postbag_Mail_Log */
	private $log;

	/** Rows held before they are written. */
	const FLUSH_ROWS = 2000;

	/** @var array<string, array> Mail id => row queued and not yet written. */
	private $pending = array();

	/** @var array<string, string> Batch id => send_at, for batches this request made to be held. */
	private $held = array();

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
		'postbag_batch_scheduled'          => array( 'batch_scheduled', 3 ),
		'postbag_schedule_changed'         => array( 'schedule_changed', 4 ),
		'postbag_job_queued'               => array( 'job_queued', 2 ),
		'postbag_job_spooled'              => array( 'job_spooled', 2 ),
		'postbag_job_uploaded'             => array( 'job_uploaded', 4 ),
		'postbag_mail_suppressed'          => array( 'mail_suppressed', 3 ),
		'postbag_suppression_export'       => array( 'suppression_export', 1 ),
		'postbag_job_failed'               => array( 'job_failed', 2 ),
		'postbag_job_cancelled'            => array( 'job_cancelled', 2 ),
	);

	public function init(): void {
		foreach ( self::HOOKS as $hook => list( $method, $args ) ) {
			add_action( $hook, array( $this, $method ), 10, $args );
		}
		// After the flusher (100), which finishes the response: whatever its batch events left.
		add_action( 'shutdown', array( $this, 'write_pending' ), 200 );
	}

	public function remove(): void {
		foreach ( self::HOOKS as $hook => list( $method, $args ) ) {
			remove_action( $hook, array( $this, $method ), 10 );
		}
		remove_action( 'shutdown', array( $this, 'write_pending' ), 200 );
	}

	/**
	 * @param string   $mail_id    Mail id.
	 * @param string[] $recipients To addresses.
	 * @param string   $subject    Subject.
	 */
	public function mail_queued( string $mail_id, array $recipients, string $subject ): void {
		$this->pending[ $mail_id ] = array(
			'blog_id'    => get_current_blog_id(), // Rows are written later, perhaps after a switch_to_blog().
			'mail_id'    => $mail_id,
			'recipients' => $recipients,
			'subject'    => $subject,
		);
		// No flush here (that would make the visitor wait): the queue's memory budget flushes
		// its batches early when memory runs low, and their events write these rows.
	}

	public function write_pending(): void {
		if ( $this->pending ) {
			$this->log->record_queued( array_values( $this->pending ) );
			$this->pending = array();
		}
	}

	/**
	 * A batch's event: its rows still held take the status; the others are updated in the log.
	 *
	 * @param string[] $mail_ids Its mails.
	 * @param string   $status   New status.
	 * @param string   $reason   Why, or ''.
	 * @param array    $fields   batch_id, receipt_key.
	 */
	private function batch_status( array $mail_ids, string $status, string $reason, array $fields ): void {
		$written = array();
		foreach ( $mail_ids as $mail_id ) {
			if ( isset( $this->pending[ $mail_id ] ) ) {
				$this->pending[ $mail_id ] = array_merge( $this->pending[ $mail_id ], $fields, compact( 'status', 'reason' ) );
			} else {
				$written[] = $mail_id;
			}
		}
		if ( $written ) {
			$this->log->set_statuses( $written, $status, $reason, $fields );
		}
		if ( count( $this->pending ) >= self::FLUSH_ROWS ) {
			$this->write_pending();
		}
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $mail_ids Its mails.
	 * @param string   $reason   Why the upload failed.
	 */
	public function batch_spooled( string $batch_id, array $mail_ids, string $reason ): void {
		$this->batch_status( $mail_ids, 'spooled', $reason, array( 'batch_id' => $batch_id ) );
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $mail_ids Its mails.
	 */
	public function batch_uploaded( string $batch_id, array $mail_ids ): void {
		$held = $this->held[ $batch_id ] ?? null;
		$this->batch_status(
			$mail_ids,
			null === $held ? 'uploaded' : 'scheduled',
			null === $held ? '' : self::held_until( $held ),
			array(
				'batch_id'    => $batch_id,
				'receipt_key' => Postbag_Log_Sync::receipt_key( $batch_id ),
				'due_at'      => $held, // No receipt before then: the sync does not look.
			)
		);
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $sent     Mails core sent (S3 and the spool both failed).
	 */
	public function batch_sent_synchronously( string $batch_id, array $sent ): void {
		$this->batch_status( $sent, 'sent', __( 'Sent through WordPress: neither the spool nor S3 took the batch.', 'postbag' ), array( 'batch_id' => $batch_id ) );
	}

	/**
	 * @param string   $batch_id Batch id.
	 * @param string[] $mail_ids Its mails.
	 * @param string   $send_at  When the sender sends it (UTC RFC 3339).
	 */
	public function batch_scheduled( string $batch_id, array $mail_ids, string $send_at ): void {
		$this->held[ $batch_id ] = $send_at;
		$this->batch_status(
			$mail_ids,
			'scheduled',
			self::held_until( $send_at ),
			array(
				'batch_id' => $batch_id,
				'due_at'   => $send_at,
			)
		);
	}

	/**
	 * @param string $send_at UTC RFC 3339.
	 */
	private static function held_until( string $send_at ): string {
		/* translators: %s: a time in UTC */
		return sprintf( __( 'Held by the sender until %s (UTC).', 'postbag' ), $send_at );
	}

	/**
	 * A held job or batch this site asked to cancel or move. Only asked: a
	 * batch's mails stay `scheduled` and wait on the sender's result
	 * (`status/control/batches/<id>.json`, Postbag_Log_Sync), which says
	 * whether the request came in time; a job's status document says it.
	 *
	 * @param string   $kind     'job' or 'batch'.
	 * @param string   $id       Its id.
	 * @param array    $changes  `state` => 'cancelled', or the new `send_at` / `send_between`.
	 * @param string[] $mail_ids A batch's mails.
	 */
	public function schedule_changed( string $kind, string $id, array $changes, array $mail_ids ): void {
		$ids    = 'job' === $kind ? array( $id ) : $mail_ids;
		$fields = 'job' === $kind ? array() : array(
			'receipt_key' => Postbag_Log_Sync::CONTROL_PREFIX . 'batches/' . $id . '.json',
			'due_at'      => null,
		);
		if ( ! empty( $changes['spool'] ) ) {
			// Taken out of this site's spool before any upload: the sender never had it.
			$this->batch_status( $ids, 'cancelled', __( 'Cancelled before upload: nobody got it.', 'postbag' ), array() );
			return;
		}
		if ( 'cancelled' === ( $changes['state'] ?? '' ) ) {
			$this->batch_status( $ids, 'scheduled', __( 'Cancel requested.', 'postbag' ), $fields );
			return;
		}
		$window = $changes['send_between'] ?? null;
		$when   = is_array( $window ) ? sprintf( '%s – %s', $window['start'] ?? '', $window['end'] ?? '' ) : (string) ( $changes['send_at'] ?? __( 'now', 'postbag' ) );
		/* translators: %s: a time or a window, UTC */
		$this->batch_status( $ids, 'scheduled', sprintf( __( 'Move requested: to be sent at %s (UTC).', 'postbag' ), $when ), $fields );
	}

	/**
	 * A list mail not queued because its recipient is suppressed: a row says so.
	 *
	 * @param string $address The recipient.
	 * @param string $list    The mail's list.
	 * @param array  $atts    wp_mail() arguments.
	 */
	public function mail_suppressed( string $address, string $list, array $atts ): void {
		$id                   = 'suppressed-' . wp_generate_uuid4(); // Never queued: no mail id of its own.
		$this->pending[ $id ] = array(
			'blog_id'    => get_current_blog_id(),
			'mail_id'    => $id,
			'recipients' => array( $address ),
			'subject'    => is_string( $atts['subject'] ?? null ) ? $atts['subject'] : '',
			'status'     => 'suppressed',
			/* translators: 1: address, 2: list name */
			'reason'     => sprintf( __( 'Not queued: %1$s is on the suppression list for "%2$s" (unsubscribed, bounced or complained).', 'postbag' ), $address, $list ),
		);
	}

	/** Export reasons (SES feedback) => the log status of the mail they were about. */
	const FEEDBACK = array(
		'bounce'    => 'bounced',
		'complaint' => 'complained',
	);

	/**
	 * The sender's suppression export: each SES bounce or complaint marks the
	 * mail it was about, the address's latest mail sent before it.
	 *
	 * @param array $entries `suppressions/export.json`'s entries.
	 */
	public function suppression_export( $entries ): void {
		foreach ( (array) $entries as $entry ) {
			$status = is_array( $entry ) && is_string( $entry['reason'] ?? null ) ? ( self::FEEDBACK[ $entry['reason'] ] ?? null ) : null;
			if ( null === $status || 'ses' !== ( $entry['source'] ?? '' ) || ! is_string( $entry['address'] ?? null ) || ! is_string( $entry['at'] ?? null ) ) {
				continue; // Unsubscribes and operators' entries are not about one mail; a bad entry never stops the others.
			}
			/* translators: %s: time, UTC */
			$this->log->mark_feedback( $entry['address'], $entry['at'], $status, sprintf( 'bounced' === $status ? __( 'SES reported a hard bounce at %s (UTC); the address is suppressed.', 'postbag' ) : __( 'The recipient marked it as spam at %s (UTC); the address is suppressed.', 'postbag' ), $entry['at'] ) );
		}
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
	 * @param string $job_id     Job id.
	 * @param int    $rows       Recipients uploaded.
	 * @param int    $dropped    Rows dropped as invalid.
	 * @param int    $suppressed Rows left out on the site: on its suppression list.
	 */
	public function job_uploaded( string $job_id, int $rows, int $dropped, int $suppressed = 0 ): void {
		$this->log->set_status( $job_id, 'uploaded', '', array( 'counts' => compact( 'rows', 'dropped', 'suppressed' ) ) );
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
