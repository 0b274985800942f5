<?php
/**
 * The page answers at once: under PHP-FPM the upload happens after the response.
 *
 * @package Postbag\Tests
 */

/**
 * A page sending marked mail, served by PHP-FPM, with S3 behind a gate that
 * lets nothing through until the test opens it: the response must be
 * complete while the upload is still held, and the batch must land once the
 * gate opens. No timing involved; a plugin that uploaded before answering
 * would keep the response waiting behind the gate and fail the test.
 */
final class Postbag_PhpFpmTest extends Postbag_Test_Live_Case {

	public function test_the_response_is_complete_before_the_upload_goes_out(): void {
		$this->require_php_fpm();
		$sandbox = Postbag_Test_WordPress::$sandbox;
		list( $gate, $port ) = $this->gated_proxy( 'gate-proxy' );
		$fpm                 = null;
		try {
			$fpm      = new Postbag_Test_Php_Fpm( $sandbox );
			$response = $fpm->request(
				__DIR__ . '/requests/fpm-send-marked-mail.php',
				// Longer than the test holds the gate, so the upload waits rather than fails.
				$this->page_params( "http://127.0.0.1:$port", array( 'POSTBAG_UPLOAD_TIMEOUT' => 60 ) ),
				30
			);

			list( , $body ) = explode( "\r\n\r\n", $response['stdout'], 2 ) + array( 1 => '' );
			$this->assertSame( 'queued', $body, 'page body; php-fpm said: ' . $response['stderr'] . @file_get_contents( $fpm->log ) );
			$this->assertSame( array(), $this->objects(), 'the page was complete while the upload was held at the gate' );

			posix_kill( $gate->pid, SIGUSR1 );
			$batches = $this->wait_for_batches( 30 );
			$this->assertCount( 1, $batches, 'the upload went on after the response' );
			$mail = reset( $batches )['emails'][0];
			$this->assertSame( array( 'reader@example.net' ), $mail['to'] );
			$this->assertSame( 'Sent from a page', $mail['subject'] );
		} finally {
			$gate->stop();
			if ( null !== $fpm ) {
				$fpm->stop();
			}
		}
	}

	/**
	 * Batch files in the bucket once there are any, or none after `$timeout` seconds.
	 *
	 * @return array<string, array>
	 */
	private function wait_for_batches( float $timeout ): array {
		$deadline = microtime( true ) + $timeout;
		do {
			$batches = self::batches( $this->objects() );
			if ( $batches ) {
				return $batches;
			}
			usleep( 200000 );
		} while ( microtime( true ) < $deadline );
		return array();
	}
}
