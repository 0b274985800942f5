<?php
/**
 * The spool is never readable over HTTP, even inside the web root.
 *
 * @package Postbag\Tests
 */

/**
 * The worst default: the spool in wp-content/uploads/ under the document
 * root, where nginx serves everything (.htaccess protects nothing there). A
 * batch that could not be uploaded waits in it with its state. Every file
 * of the spool is then requested the way a web server that runs WordPress
 * would serve it: through PHP-FPM, and through PHP's built-in server (which
 * runs .php files and serves the rest as they are). No response may hold
 * any of the mail, nor run what the mail holds.
 */
final class Postbag_SpoolPrivacyTest extends Postbag_Test_Live_Case {

	public function test_no_spool_file_shows_the_mail_through_php_fpm_or_php_s(): void {
		$root  = Postbag_Test_WordPress::$sandbox->path( 'docroot-' . bin2hex( random_bytes( 4 ) ), true );
		$spool = "$root/wp-content/uploads/postbag-spool";
		$this->switch_to( $this->plugin_for( self::closed_endpoint(), null, array( 'spool_dir' => $spool ) ) );
		$secret = 'secret-' . bin2hex( random_bytes( 8 ) );
		$this->assertTrue( wp_mail( array( "$secret@example.net", self::MARKER ), "Subject $secret", "Body $secret <?php echo 'PWNED'; ?>" ) );
		$this->assertCount( 1, $this->plugin->flush(), 'the upload failed: the batch waits in the spool' );

		$files = array_values( array_map( 'basename', array_filter( glob( "$spool/{,.}*", GLOB_BRACE ) ?: array(), 'is_file' ) ) );
		$this->assertCount( 1, preg_grep( '/\.batch\.php$/', $files ) );
		$this->assertCount( 1, preg_grep( '/\.state\.php$/', $files ) );
		$this->assertStringContainsString( $secret, implode( '', array_map( static fn( string $name ): string => (string) file_get_contents( "$spool/$name" ), $files ) ), 'the secret is on disk, so the test can see it leak' );

		$served = array_merge( $this->through_php_fpm( $spool, $files ), $this->through_php_s( $root, $files ) );

		$this->assertCount( 2 * count( $files ) + 1, $served );
		foreach ( $served as $request => $body ) {
			$this->assertStringNotContainsString( $secret, $body, "$request showed the mail" );
			$this->assertStringNotContainsString( 'PWNED', $body, "$request ran the mail" );
		}
		$batch = (string) current( preg_grep( '/\.batch\.php$/', $files ) );
		$this->assertSame( '', $served[ "php-fpm $batch" ], 'PHP ran the batch file and exited before any output' );
		$this->assertSame( '', $served[ "php -S $batch" ] );
	}

	/**
	 * Each file run by PHP-FPM as the script of a request.
	 *
	 * @param string[] $files Names in the spool.
	 * @return array<string, string> Request => response body.
	 */
	private function through_php_fpm( string $spool, array $files ): array {
		$this->require_php_fpm();
		$fpm    = new Postbag_Test_Php_Fpm( Postbag_Test_WordPress::$sandbox );
		$served = array();
		try {
			foreach ( $files as $name ) {
				$response = $fpm->request( "$spool/$name", array( 'SCRIPT_NAME' => "/wp-content/uploads/postbag-spool/$name" ), 30 );
				list( , $body ) = explode( "\r\n\r\n", $response['stdout'], 2 ) + array( 1 => $response['stdout'] );
				$served[ "php-fpm $name" ] = $body . $response['stderr'];
			}
		} finally {
			$fpm->stop();
		}
		return $served;
	}

	/**
	 * Each file fetched over HTTP from PHP's built-in server with the document
	 * root above wp-content/, and the directory itself.
	 *
	 * @param string[] $files Names in the spool.
	 * @return array<string, string> Request => response body.
	 */
	private function through_php_s( string $root, array $files ): array {
		$port   = Postbag_Test_Process::free_port();
		$log    = Postbag_Test_WordPress::$sandbox->path( 'php-s-' . $port . '.log' );
		$server = new Postbag_Test_Process( array( PHP_BINARY, '-S', "127.0.0.1:$port", '-t', $root ), $log );
		$served = array();
		try {
			$deadline = microtime( true ) + 10;
			while ( false === ( $probe = @fsockopen( '127.0.0.1', $port ) ) && microtime( true ) < $deadline ) { // phpcs:ignore WordPress.PHP.NoSilencedErrors -- not listening yet.
				usleep( 20000 );
			}
			$this->assertNotFalse( $probe, 'php -S listens: ' . @file_get_contents( $log ) );
			fclose( $probe );
			foreach ( array_merge( array( '' ), $files ) as $name ) {
				$url                          = "http://127.0.0.1:$port/wp-content/uploads/postbag-spool/" . rawurlencode( $name );
				$body                         = file_get_contents( $url, false, stream_context_create( array( 'http' => array( 'ignore_errors' => true ) ) ) );
				$served[ 'php -S ' . ( '' === $name ? '(directory)' : $name ) ] = (string) $body;
			}
		} finally {
			$server->stop();
		}
		return $served;
	}
}
