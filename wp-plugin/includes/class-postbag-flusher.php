<?php
/**
 * Uploads the queue at the end of the request.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * On `shutdown` (which every request reaches, REST, AJAX, cron and admin
 * ones included, unlike `wp_footer`), finishes the response where the server
 * allows it, then uploads every batch; a batch that fails goes to the spool.
 */
final class Postbag_Flusher {

	/** @var Postbag_Queue */
	private $queue;

	/** @var Postbag_Batch_Uploader */
	private $uploader;

	/** @var Postbag_Spool_Retry */
	private $retry;

	/** @var Postbag_Sync_Sender */
	private $sync;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param Postbag_Queue          $queue    The request's queue.
	 * @param Postbag_Batch_Uploader $uploader Uploads batches.
	 * @param Postbag_Spool_Retry    $retry    Takes the batches that fail.
	 * @param Postbag_Sync_Sender    $sync     Last resort when the spool cannot be written.
	 * @param callable(): int        $clock    Current Unix time.
	 */
	public function __construct( Postbag_Queue $queue, Postbag_Batch_Uploader $uploader, Postbag_Spool_Retry $retry, Postbag_Sync_Sender $sync, callable $clock ) {
		$this->queue    = $queue;
		$this->uploader = $uploader;
		$this->retry    = $retry;
		$this->sync     = $sync;
		$this->clock    = $clock;
	}

	public function init(): void {
		// After core's wp_ob_end_flush_all (priority 1), so the page is complete before it is sent off.
		add_action( 'shutdown', array( $this, 'on_shutdown' ), 100 );
	}

	public function remove(): void {
		remove_action( 'shutdown', array( $this, 'on_shutdown' ), 100 );
	}

	public function on_shutdown(): void {
		// Mail sent by later shutdown work (a higher priority, a shutdown function
		// registered after WordPress's) would otherwise stay in the queue.
		register_shutdown_function( array( $this, 'flush_stragglers' ) );
		if ( 0 === $this->queue->count() ) {
			return;
		}
		self::finish_response();
		$this->flush();
	}

	/** The last shutdown function: uploads what was queued after on_shutdown(). */
	public function flush_stragglers(): void {
		if ( 0 !== $this->queue->count() ) {
			$this->flush();
		}
	}

	/**
	 * Uploads everything queued so far. Called on shutdown; callable directly
	 * (tests, long-running scripts that send many mails).
	 *
	 * @return array<string, string> Batch id => why its upload failed (it was spooled,
	 *                               or sent through core when the spool could not take
	 *                               it); a batch absent from it was uploaded.
	 */
	public function flush(): array {
		$batches = $this->queue->drain( ( $this->clock )() );
		if ( ! $batches ) {
			return array();
		}
		$failures = $this->uploader->upload( $batches );
		$spooled  = false;
		foreach ( $batches as $batch ) {
			if ( ! isset( $failures[ $batch->id ] ) ) {
				/**
				 * Fires when a batch (and its attachments) is in the bucket.
				 *
				 * @param string   $batch_id Batch id.
				 * @param string[] $mail_ids Ids of its mails.
				 */
				do_action( 'postbag_batch_uploaded', $batch->id, $batch->mail_ids );
			} elseif ( $this->keep( $batch, $failures[ $batch->id ] ) ) {
				$spooled = true;
			}
		}
		if ( $spooled ) {
			$this->retry->after_spooling();
		}
		return $failures;
	}

	/**
	 * Spools a batch that failed; if even that fails, sends it through core now.
	 *
	 * @param Postbag_Batch $batch  The batch.
	 * @param string        $reason Why its upload failed.
	 * @return bool Whether it was spooled.
	 */
	private function keep( Postbag_Batch $batch, string $reason ): bool {
		try {
			$this->retry->spool( $batch, $reason );
		} catch ( Postbag_Spool_Exception $e ) {
			$sent = $this->sync->send( $batch );
			foreach ( array_diff( $batch->mail_ids, $sent ) as $mail_id ) {
				/** This action is documented in wp-includes/pluggable.php */
				do_action( 'wp_mail_failed', new WP_Error( 'wp_mail_failed', sprintf( 'Postbag lost mail %s: upload failed (%s), spooling failed (%s), sending failed.', $mail_id, $reason, $e->getMessage() ), array( 'postbag_batch_id' => $batch->id ) ) );
			}
			return false;
		}
		/**
		 * Fires when a batch could not be uploaded and waits in the spool for a retry.
		 *
		 * @param string   $batch_id Batch id.
		 * @param string[] $mail_ids Ids of its mails.
		 * @param string   $reason   Why the upload failed.
		 */
		do_action( 'postbag_batch_spooled', $batch->id, $batch->mail_ids, $reason );
		return true;
	}

	/** Sends the response to the client now, where the server can, so uploads never delay it. */
	private static function finish_response(): void {
		ignore_user_abort( true ); // A client that hangs up must not cut the upload short.
		if ( (int) ini_get( 'max_execution_time' ) > 0 && function_exists( 'set_time_limit' ) ) {
			// Nor may a request that used most of its time limit; each upload has its own timeout.
			set_time_limit( 300 );
		}
		if ( function_exists( 'fastcgi_finish_request' ) ) {
			fastcgi_finish_request();
		} elseif ( function_exists( 'litespeed_finish_request' ) ) {
			litespeed_finish_request();
		}
	}
}
