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
		if ( null === Postbag_Test_Php_Fpm::binary() ) {
			$reason = 'php-fpm is not installed (Debian package php-fpm)';
			'true' === getenv( 'CI' ) ? $this->fail( $reason ) : $this->markTestSkipped( $reason . '; a failure when CI=true' );
		}
		$sandbox = Postbag_Test_WordPress::$sandbox;
		$fpm     = new Postbag_Test_Php_Fpm( $sandbox );
		$gate    = new Postbag_Test_Process(
			array( Postbag_Test_Python::binary(), '-m', 'standin.proxy', (string) parse_url( self::$aws->endpoint, PHP_URL_PORT ), '--gated' ),
			$sandbox->path( 'gate-proxy.log' ),
			null,
			true
		);
		try {
			$port = (string) $gate->read_line( 30 );
			$this->assertMatchesRegularExpression( '/^\d+$/', $port, 'gate proxy port' );

			$response = $fpm->request(
				__DIR__ . '/requests/fpm-send-marked-mail.php',
				array(
					'POSTBAG_TEST_WP_CONFIG' => $sandbox->path( 'wp-config.php' ),
					'POSTBAG_TEST_CONSTANTS' => json_encode(
						array(
							'POSTBAG_BUCKET'                => $this->bucket,
							'POSTBAG_ENDPOINT'              => "http://127.0.0.1:$port",
							'POSTBAG_PATH_STYLE'            => true,
							'POSTBAG_AWS_ACCESS_KEY_ID'     => Postbag_Test_Local_Aws::ACCESS_KEY_ID,
							'POSTBAG_AWS_SECRET_ACCESS_KEY' => Postbag_Test_Local_Aws::SECRET_ACCESS_KEY,
							'POSTBAG_SPOOL_DIR'             => $this->spool_dir,
							// Longer than the test holds the gate, so the upload waits rather than fails.
							'POSTBAG_UPLOAD_TIMEOUT'        => 60,
						)
					),
				),
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
			$fpm->stop();
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
