<?php
/**
 * The signer against every vector of AWS's published Signature Version 4 test suite.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/support.php';

use PHPUnit\Framework\TestCase;

/**
 * Each vector is a raw HTTP request (.req) with the expected canonical request
 * (.creq), string to sign (.sts) and Authorization header (.authz). The suite
 * is fetched from botocore's source distribution by fetch-aws4-testsuite.sh;
 * the request is turned into signer input the way botocore's own runner
 * (tests/unit/auth/test_sigv4.py) does, and its skips are mirrored exactly.
 */
final class Postbag_SigV4TestSuiteTest extends TestCase {

	const ACCESS_KEY = 'AKIDEXAMPLE';
	const SECRET_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
	const REGION     = 'us-east-1';
	const SERVICE    = 'service';

	/**
	 * botocore's TESTS_TO_IGNORE, with its reasons. Mirrored, not extended:
	 * test_skip_list_matches_botocore() fails if botocore's list changes.
	 */
	const SKIPPED = array(
		// "Bad request-line syntax, python's HTTP parser chokes on this."
		// (The request line holds a bare space: GET /example space/ HTTP/1.1.)
		'normalize-path/get-space'         => "botocore: bad request-line syntax, Python's HTTP parser chokes on it",
		// "Multiple query params of the same key not supported by the SDKs."
		// (botocore's runner collects the query into a dict, so repeated names collapse.)
		'get-vanilla-query-order-key-case' => 'botocore: multiple query params of the same key not supported by the SDKs',
		'get-vanilla-query-order-key'      => 'botocore: multiple query params of the same key not supported by the SDKs',
		'get-vanilla-query-order-value'    => 'botocore: multiple query params of the same key not supported by the SDKs',
	);

	/** @var string|null Directory from fetch-aws4-testsuite.sh, once fetched. */
	private static $suite_dir;

	/** @var string Why the suite could not be fetched. */
	private static $fetch_problem = '';

	/**
	 * The download happens here. PHPUnit runs data providers before
	 * setUpBeforeClass(), so both go through this memoised fetch.
	 */
	private static function suite_dir(): ?string {
		if ( null === self::$suite_dir && '' === self::$fetch_problem ) {
			$output = array();
			exec( escapeshellarg( __DIR__ . '/fetch-aws4-testsuite.sh' ) . ' 2>&1', $output, $status );
			$dir = (string) end( $output );
			if ( 0 === $status && is_dir( $dir . '/aws4_testsuite' ) ) {
				self::$suite_dir = $dir;
			} else {
				self::$fetch_problem = 'Could not fetch the AWS SigV4 test suite from botocore (tests/php/s3/fetch-aws4-testsuite.sh): ' . implode( ' ', array_slice( $output, -3 ) );
			}
		}
		return self::$suite_dir;
	}

	public static function setUpBeforeClass(): void {
		self::suite_dir();
	}

	protected function setUp(): void {
		if ( null === self::suite_dir() ) {
			Postbag_S3_Test_Needs::unavailable( $this, self::$fetch_problem );
		}
	}

	/**
	 * One case per directory holding a .req file, named by its path in the suite.
	 *
	 * @return array<string, array{0: string}>
	 */
	public function vectors(): array {
		$dir = self::suite_dir();
		if ( null === $dir ) {
			// One placeholder, so setUp() reports the failed download.
			return array( 'suite unavailable' => array( '' ) );
		}
		$root  = $dir . '/aws4_testsuite/';
		$cases = array();
		$files = new RecursiveIteratorIterator( new RecursiveDirectoryIterator( $root, FilesystemIterator::SKIP_DOTS ) );
		foreach ( $files as $file ) {
			if ( 'req' === $file->getExtension() ) {
				$name           = substr( $file->getPath(), strlen( $root ) );
				$cases[ $name ] = array( $name );
			}
		}
		ksort( $cases );
		return $cases;
	}

	/**
	 * @dataProvider vectors
	 */
	public function test_vector( string $name ): void {
		if ( isset( self::SKIPPED[ $name ] ) ) {
			$this->markTestSkipped( self::SKIPPED[ $name ] );
		}
		$base     = self::$suite_dir . '/aws4_testsuite/' . $name . '/' . basename( $name );
		$expected = array();
		foreach ( array( 'creq', 'sts', 'authz' ) as $part ) {
			$expected[ $part ] = str_replace( "\r", '', (string) file_get_contents( "$base.$part" ) );
		}
		$request = self::parse_request( (string) file_get_contents( "$base.req" ) );
		// As botocore's runner: the session token is the one the expected
		// canonical request signs (post-sts-header-after adds it only after signing).
		$token = preg_match( '/^x-amz-security-token:(.*)$/m', $expected['creq'], $match ) ? $match[1] : null;

		$signer   = new Postbag_SigV4_Signer( self::SERVICE, self::REGION );
		$time     = gmmktime( 12, 36, 0, 8, 30, 2015 );
		$amz_date = Postbag_SigV4_Signer::amz_date( $time );
		$hash     = Postbag_SigV4_Signer::payload_hash( $request['body'] );

		$headers   = $signer->prepare_headers( $request['headers'], $amz_date, $hash, $token );
		$canonical = $signer->canonical_request( $request['method'], $request['path'], $request['query'], $headers, $hash );
		$this->assertSame( $expected['creq'], $canonical, 'canonical request' );

		$string_to_sign = $signer->string_to_sign( $amz_date, $canonical );
		$this->assertSame( $expected['sts'], $string_to_sign, 'string to sign' );

		$signature = $signer->signature( $signer->signing_key( self::SECRET_KEY, $amz_date ), $string_to_sign );
		$this->assertSame(
			$expected['authz'],
			$signer->authorization( self::ACCESS_KEY, $amz_date, $signer->signed_headers( $headers ), $signature ),
			'Authorization from the stages'
		);

		$signed = $signer->sign(
			new Postbag_Credentials( self::ACCESS_KEY, self::SECRET_KEY, $token ),
			$request['method'],
			$request['path'],
			$request['query'],
			$request['headers'],
			$hash,
			$time
		);
		$this->assertSame( $expected['authz'], $signed['Authorization'], 'Authorization from sign()' );
	}

	/**
	 * Our skips are botocore's, no more and no fewer.
	 */
	public function test_skip_list_matches_botocore(): void {
		$source = (string) file_get_contents( self::$suite_dir . '/test_sigv4.py' );
		$this->assertSame( 1, preg_match( '/^TESTS_TO_IGNORE = \[(.*?)^\]/ms', $source, $block ), 'TESTS_TO_IGNORE in test_sigv4.py' );
		preg_match_all( "/^\s*'([^']+)',/m", $block[1], $names );
		$expected = $names[1];
		$actual   = array_keys( self::SKIPPED );
		sort( $expected );
		sort( $actual );
		$this->assertSame( $expected, $actual );
	}

	/**
	 * The request the way botocore's runner hands it to SigV4Auth: an HTTP/1.1
	 * parse (folded header lines joined by a space, repeated headers kept in
	 * order), the path undecoded, the query decoded like Python's parse_qsl()
	 * into a dict (pairs with an empty value dropped, a repeated name keeps its
	 * last value), the body as sent.
	 *
	 * @param string $raw Contents of a .req file.
	 * @return array{method: string, path: string, query: array<string, string>, headers: array<string, string[]>, body: string}
	 */
	private static function parse_request( string $raw ): array {
		$parts = explode( "\n\n", str_replace( "\r\n", "\n", $raw ), 2 );
		$lines = explode( "\n", $parts[0] );
		if ( ! preg_match( '~^(\S+) (\S+) HTTP/1\.1$~', (string) array_shift( $lines ), $start ) ) {
			throw new UnexpectedValueException( 'Bad request line' );
		}
		$headers = array();
		$last    = null;
		foreach ( $lines as $line ) {
			if ( '' === $line ) {
				continue; // A file that ends with a newline and no blank line.
			}
			if ( null !== $last && preg_match( '/^[ \t]/', $line ) ) {
				// obs-fold: a continuation line belongs to the previous value.
				$index                      = count( $headers[ $last ] ) - 1;
				$headers[ $last ][ $index ] .= ' ' . trim( $line );
				continue;
			}
			list( $name, $value ) = explode( ':', $line, 2 );
			$headers[ $name ][]   = $value;
			$last                 = $name;
		}
		$target = explode( '?', $start[2], 2 );
		$query  = array();
		foreach ( isset( $target[1] ) ? explode( '&', $target[1] ) : array() as $pair ) {
			list( $name, $value ) = array_pad( explode( '=', $pair, 2 ), 2, '' );
			if ( '' !== $value ) {
				$query[ urldecode( $name ) ] = urldecode( $value );
			}
		}
		return array(
			'method'  => $start[1],
			'path'    => $target[0],
			'query'   => $query,
			'headers' => $headers,
			'body'    => $parts[1] ?? '',
		);
	}
}
