<?php
/**
 * The credentials value object keeps its secret.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/support.php';

use PHPUnit\Framework\TestCase;

/**
 * Whatever a developer or a logging plugin does with a Postbag_Credentials,
 * the secret access key and the session token do not come out.
 */
final class Postbag_CredentialsTest extends TestCase {

	const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
	const TOKEN  = 'IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN';

	private function credentials(): Postbag_Credentials {
		return new Postbag_Credentials( 'ASIAIOSFODNN7EXAMPLE', self::SECRET, self::TOKEN, 1795334400, 'imds' );
	}

	public function test_getters(): void {
		$credentials = $this->credentials();
		$this->assertSame( 'ASIAIOSFODNN7EXAMPLE', $credentials->access_key_id() );
		$this->assertSame( self::SECRET, $credentials->secret_access_key() );
		$this->assertSame( self::TOKEN, $credentials->session_token() );
		$this->assertSame( 1795334400, $credentials->expires_at() );
		$this->assertSame( 'imds', $credentials->source() );
	}

	/**
	 * @return array<string, array{0: callable(Postbag_Credentials): string}>
	 */
	public function renderings(): array {
		return array(
			'var_dump'         => array(
				static function ( Postbag_Credentials $credentials ): string {
					ob_start();
					var_dump( $credentials ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions -- what a developer would do.
					return (string) ob_get_clean();
				},
			),
			'print_r'          => array(
				static function ( Postbag_Credentials $credentials ): string {
					return print_r( $credentials, true ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions
				},
			),
			'var_export'       => array(
				static function ( Postbag_Credentials $credentials ): string {
					return var_export( $credentials, true ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions
				},
			),
			'string'           => array(
				static function ( Postbag_Credentials $credentials ): string {
					return (string) $credentials;
				},
			),
			'json_encode'      => array(
				static function ( Postbag_Credentials $credentials ): string {
					return (string) json_encode( $credentials );
				},
			),
		);
	}

	/**
	 * @dataProvider renderings
	 * @param callable(Postbag_Credentials): string $render
	 */
	public function test_secret_and_token_never_rendered( callable $render ): void {
		$text = $render( $this->credentials() );
		$this->assertStringNotContainsString( self::SECRET, $text );
		$this->assertStringNotContainsString( 'wJalrXUtnFEMI', $text );
		$this->assertStringNotContainsString( self::TOKEN, $text );
	}

	/**
	 * Stack traces that carry arguments (zend.exception_ignore_args off, as on
	 * many development set-ups) show the secret as a SensitiveParameterValue.
	 */
	public function test_secret_redacted_from_stack_trace_arguments(): void {
		$previous = ini_set( 'zend.exception_ignore_args', '0' );
		try {
			new Postbag_Credentials( '', self::SECRET, self::TOKEN );
			$this->fail( 'Expected Postbag_Credentials_Exception' );
		} catch ( Postbag_Credentials_Exception $e ) {
			$trace = $e->getTrace();
		} finally {
			ini_set( 'zend.exception_ignore_args', (string) $previous );
		}
		$text = print_r( $trace[0]['args'] ?? array(), true ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions
		$this->assertStringContainsString( 'SensitiveParameterValue', $text, 'arguments are recorded' );
		$this->assertStringNotContainsString( self::SECRET, $text );
		$this->assertStringNotContainsString( self::TOKEN, $text );
	}

	public function test_debug_output_still_identifies_the_key(): void {
		$this->assertSame( 'AWS credentials ASIAIOSFODNN7EXAMPLE from imds', (string) $this->credentials() );
		$this->assertStringContainsString( '[hidden]', print_r( $this->credentials(), true ) ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions
	}

	public function test_cannot_be_serialized(): void {
		$this->expectException( LogicException::class );
		serialize( $this->credentials() );
	}

	/**
	 * @testWith ["", "secret"]
	 *           ["AKIA", ""]
	 */
	public function test_key_id_and_secret_required( string $id, string $secret ): void {
		$this->expectException( Postbag_Credentials_Exception::class );
		new Postbag_Credentials( $id, $secret );
	}

	public function test_empty_token_means_none(): void {
		$this->assertNull( ( new Postbag_Credentials( 'AKIA', 'secret', '' ) )->session_token() );
	}

	public function test_expires_within(): void {
		$credentials = $this->credentials();
		$this->assertFalse( $credentials->expires_within( 1795334400 - 301, 300 ) );
		$this->assertTrue( $credentials->expires_within( 1795334400 - 300, 300 ) );
		$this->assertFalse( ( new Postbag_Credentials( 'AKIA', 'secret' ) )->expires_within( PHP_INT_MAX, 300 ), 'long-term keys never expire' );
	}
}
