<?php
/**
 * The signer's stages on their own, beyond the AWS test suite.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/support.php';

use PHPUnit\Framework\TestCase;

/**
 * Signing key derivation, S3 versus generic path handling, the headers SigV4
 * adds, and what the signer refuses.
 */
final class Postbag_SigV4SignerTest extends TestCase {

	/**
	 * AWS's worked example of deriving a signing key ("Examples of how to
	 * derive a signing key for Signature Version 4", IAM, 2012-02-15).
	 */
	public function test_signing_key_matches_aws_worked_example(): void {
		$signer = new Postbag_SigV4_Signer( 'iam', 'us-east-1' );
		$key    = $signer->signing_key( 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', '20120215T000000Z' );
		$this->assertSame( 'f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d', bin2hex( $key ) );
	}

	public function test_s3_mode_keeps_the_wire_path_as_is(): void {
		$signer = Postbag_SigV4_Signer::for_s3( 'eu-west-1' );
		$this->assertSame( '/bucket/a%20b/../c//d', $signer->canonical_uri( '/bucket/a%20b/../c//d' ) );
		$this->assertSame( '/', $signer->canonical_uri( '' ) );
	}

	public function test_generic_mode_normalises_and_encodes_again(): void {
		$signer = new Postbag_SigV4_Signer( 'service', 'us-east-1' );
		$this->assertSame( '/a%2520b/d', $signer->canonical_uri( '/a%20b/../a%20b/./d' ) );
	}

	public function test_query_sorted_by_encoded_name_then_value(): void {
		$signer = new Postbag_SigV4_Signer( 'service', 'us-east-1' );
		$this->assertSame(
			'%E1%88%B4=1&Param=a&Param=b&Param-3=x%20y',
			$signer->canonical_query_string(
				array(
					'Param-3' => 'x y',
					'Param'   => array( 'b', 'a' ),
					'ሴ'       => '1',
				)
			)
		);
	}

	public function test_s3_prepare_headers_replaces_stale_values_and_drops_authorization(): void {
		$signer  = Postbag_SigV4_Signer::for_s3( 'eu-west-1' );
		$headers = $signer->prepare_headers(
			array(
				'Host'                 => 'b.s3.eu-west-1.amazonaws.com',
				'X-Amz-Date'           => '20000101T000000Z',
				'X-AMZ-Security-Token' => 'old',
				'X-Amz-Content-SHA256' => 'old',
				'Authorization'        => 'AWS4-HMAC-SHA256 old',
			),
			'20261122T070000Z',
			Postbag_SigV4_Signer::EMPTY_PAYLOAD_SHA256,
			'new-token'
		);
		$this->assertSame(
			array(
				'Host'                 => 'b.s3.eu-west-1.amazonaws.com',
				'x-amz-date'           => '20261122T070000Z',
				'x-amz-security-token' => 'new-token',
				'x-amz-content-sha256' => Postbag_SigV4_Signer::EMPTY_PAYLOAD_SHA256,
			),
			$headers
		);
	}

	public function test_hop_by_hop_headers_are_not_signed(): void {
		$signer = Postbag_SigV4_Signer::for_s3( 'eu-west-1' );
		$this->assertSame(
			'host;x-amz-date',
			$signer->signed_headers(
				array(
					'Host'       => 'h',
					'User-Agent' => 'x',
					'Expect'     => '100-continue',
					'Connection' => 'keep-alive',
					'X-Amz-Date' => 'd',
				)
			)
		);
	}

	/**
	 * @testWith ["a\r\nX-Injected: 1"]
	 *           ["a\nb"]
	 */
	public function test_line_breaks_in_header_values_are_refused( string $value ): void {
		$signer = Postbag_SigV4_Signer::for_s3( 'eu-west-1' );
		$this->expectException( InvalidArgumentException::class );
		$signer->canonical_headers( array( 'Content-Type' => $value ) );
	}

	public function test_sign_adds_date_token_payload_hash_and_authorization(): void {
		$signer  = Postbag_SigV4_Signer::for_s3( 'eu-west-1' );
		$headers = $signer->sign(
			new Postbag_Credentials( 'AKID', 'secret', 'token' ),
			'PUT',
			'/key',
			array(),
			array( 'Host' => 'b.s3.eu-west-1.amazonaws.com' ),
			Postbag_SigV4_Signer::payload_hash( 'body' ),
			gmmktime( 7, 0, 0, 11, 22, 2026 )
		);
		$this->assertSame( '20261122T070000Z', $headers['x-amz-date'] );
		$this->assertSame( 'token', $headers['x-amz-security-token'] );
		$this->assertSame( hash( 'sha256', 'body' ), $headers['x-amz-content-sha256'] );
		$this->assertStringStartsWith(
			'AWS4-HMAC-SHA256 Credential=AKID/20261122/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=',
			$headers['Authorization']
		);
		$this->assertStringNotContainsString( 'secret', implode( "\n", $headers ) );
	}
}
