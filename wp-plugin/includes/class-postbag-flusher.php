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
 * ones included, unlike `wp_footer`): every batch is serialized and written
 * to the spool one at a time, then the response is finished where the server
 * allows it, then the batches are uploaded from the spool in waves and
 * removed from it; a batch that fails stays there for the retry. Last, the
 * notify jobs the request queued read their recipients (Postbag_Jobs): their
 * records were on disk before the response too.
 *
 * The order is what makes "wp_mail() said true" hold: once the visitor has
 * the page, all its mail is on disk, so a worker killed after the response
 * (a php-fpm reload, the OOM killer, kill -9) leaves it to the retry instead
 * of losing it. The visitor waits for the serialization, which had to happen
 * anyway, and a local write per batch, not for S3. A batch re-uploaded by the
 * retry after a crash is the same file with the same ids, which the sender
 * deduplicates.
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

	/** @var Postbag_Jobs|null Notify jobs to stream once the response is sent. */
	private $jobs;

	/** @var bool A flush is running (mail queued by its hooks waits for the next one). */
	private $flushing = false;

	/**
	 * @param Postbag_Queue          $queue    The request's queue.
	 * @param Postbag_Batch_Uploader $uploader Uploads batches the spool could not take.
	 * @param Postbag_Spool_Retry    $retry    Keeps batches in the spool and uploads them.
	 * @param Postbag_Sync_Sender    $sync     Last resort when neither the spool nor S3 takes a batch.
	 * @param callable(): int        $clock    Current Unix time.
	 * @param Postbag_Jobs|null      $jobs     Notify jobs queued by the request, streamed after the response.
	 */
	public function __construct( Postbag_Queue $queue, Postbag_Batch_Uploader $uploader, Postbag_Spool_Retry $retry, Postbag_Sync_Sender $sync, callable $clock, ?Postbag_Jobs $jobs = null ) {
		$this->queue    = $queue;
		$this->uploader = $uploader;
		$this->retry    = $retry;
		$this->sync     = $sync;
		$this->clock    = $clock;
		$this->jobs     = $jobs;
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
		if ( 0 === $this->queue->count() && ( null === $this->jobs || ! $this->jobs->has_pending() ) ) {
			return;
		}
		$this->run( true );
	}

	/** The last shutdown function: uploads what was queued after on_shutdown(), streams jobs queued after it. */
	public function flush_stragglers(): void {
		if ( 0 !== $this->queue->count() ) {
			$this->flush();
		}
		if ( null !== $this->jobs && $this->jobs->has_pending() ) {
			self::finish_response(); // Perhaps not done yet: on_shutdown() had nothing to do then.
			$this->jobs->after_response();
		}
	}

	/**
	 * Uploads everything queued so far. Called on shutdown and when the queue
	 * fills up; callable directly (tests, long-running scripts that send many mails).
	 *
	 * @return array<string, string> Batch id => why its upload failed (it waits in the
	 *                               spool, or was sent through core when the spool could
	 *                               not take it); a batch absent from it was uploaded.
	 */
	public function flush(): array {
		return $this->run( false );
	}

	/**
	 * @param bool $finish Finish the response between spooling and uploading.
	 * @return array<string, string> See flush().
	 */
	private function run( bool $finish ): array {
		if ( $this->flushing ) {
			return array();
		}
		$this->flushing = true;
		try {
			list( $kept, $unspooled, $failures ) = $this->keep();
			if ( $finish ) {
				self::finish_response();
			}
			$failures += $this->retry->upload_kept( $kept ) + $this->upload_unspooled( $unspooled );
			if ( $finish && null !== $this->jobs ) {
				// Only now, the visitor gone: notify jobs read their recipients here, never during the request.
				$this->jobs->after_response();
			}
			return $failures;
		} finally {
			$this->flushing = false;
		}
	}

	/**
	 * Empties the queue into the spool, one batch at a time. A batch the spool
	 * cannot take is uploaded from memory instead, a wave at a time, so even
	 * then memory stays bounded.
	 *
	 * @return array{0: string[], 1: array<int, array{0: Postbag_Batch, 1: string}>, 2: array<string, string>}
	 *         Ids of the batches spooled; batches still to upload from memory, with why the
	 *         spool refused them; failures of those already uploaded from memory (see flush()).
	 */
	private function keep(): array {
		$kept      = array();
		$unspooled = array();
		$failures  = array();
		$bytes     = 0;
		foreach ( $this->queue->batches( ( $this->clock )() ) as $batch ) {
			try {
				$this->retry->keep( $batch );
				$kept[] = $batch->id;
				continue;
			} catch ( Throwable $e ) {
				// Postbag_Spool_Exception mostly; whatever it is, the batch must go on (the queue let it go).
				$unspooled[] = array( $batch, $e->getMessage() );
			}
			$bytes += strlen( $batch->body ) + array_sum( array_map( 'strlen', $batch->attachments ) );
			if ( count( $unspooled ) >= Postbag_Spool_Retry::WAVE_BATCHES || $bytes >= Postbag_Spool_Retry::WAVE_BYTES ) {
				$failures += $this->upload_unspooled( $unspooled );
				$unspooled = array();
				$bytes     = 0;
			}
		}
		$this->retry->after_keeping();
		return array( $kept, $unspooled, $failures );
	}

	/**
	 * Uploads batches the spool refused; if S3 refuses them too, sends them through core now.
	 *
	 * @param array<int, array{0: Postbag_Batch, 1: string}> $unspooled Batches and why the spool refused them.
	 * @return array<string, string> Batch id => why its upload failed.
	 */
	private function upload_unspooled( array $unspooled ): array {
		if ( ! $unspooled ) {
			return array();
		}
		$failures = $this->uploader->upload( array_column( $unspooled, 0 ) );
		foreach ( $unspooled as list( $batch, $spool_error ) ) {
			if ( ! isset( $failures[ $batch->id ] ) ) {
				/** This action is documented in includes/class-postbag-spool-retry.php */
				do_action( 'postbag_batch_uploaded', $batch->id, $batch->mail_ids );
				continue;
			}
			$sent = $this->sync->send( $batch );
			foreach ( array_diff( $batch->mail_ids, $sent ) as $mail_id ) {
				/** This action is documented in wp-includes/pluggable.php */
				do_action( 'wp_mail_failed', new WP_Error( 'wp_mail_failed', sprintf( 'Postbag lost mail %s: spooling failed (%s), upload failed (%s), sending failed.', $mail_id, $spool_error, $failures[ $batch->id ] ), array( 'postbag_batch_id' => $batch->id ) ) );
			}
		}
		return $failures;
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
