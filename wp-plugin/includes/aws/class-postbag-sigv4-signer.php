<?php
/**
 * AWS Signature Version 4, in the stages AWS documents.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Signs requests with AWS Signature Version 4.
 *
 * Each stage is a public method checked on its own against AWS's published
 * test suite: canonical request, string to sign, signing key, signature and
 * Authorization header. sign() chains them. Modelled on botocore's
 * SigV4Auth / S3SigV4Auth (botocore/auth.py).
 *
 * Two modes, as in botocore:
 * - generic (any service): the path is normalised (dot segments and repeated
 *   slashes removed) and URI-encoded, so a path that is already encoded on the
 *   wire ends up encoded twice, as the SigV4 specification asks;
 * - S3 (for_s3()): the path is the wire path, already encoded once, and is used
 *   exactly as is; every request carries x-amz-content-sha256.
 *
 * Headers are passed as name => value (or name => list of values, for a
 * header that repeats); query parameters the same way, decoded.
 */
final class Postbag_SigV4_Signer {

	public const ALGORITHM = 'AWS4-HMAC-SHA256';

	/** Hex SHA-256 of the empty string: the payload hash of a bodiless request. */
	public const EMPTY_PAYLOAD_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

	/** Format of x-amz-date for gmdate(). */
	public const AMZ_DATE_FORMAT = 'Ymd\THis\Z';

	/**
	 * Headers botocore never signs: proxies and clients add or change them on the way.
	 */
	private const UNSIGNED_HEADERS = array(
		'baggage',
		'connection',
		'expect',
		'keep-alive',
		'proxy-authenticate',
		'proxy-authorization',
		'te',
		'traceparent',
		'tracestate',
		'trailer',
		'transfer-encoding',
		'upgrade',
		'user-agent',
		'x-amzn-trace-id',
	);

	/** @var string */
	private $service;

	/** @var string */
	private $region;

	/** @var bool */
	private $s3;

	/**
	 * @param string $service Signing name of the service ('s3', 'sqs', 'service' in the test suite).
	 * @param string $region  Region the request goes to, e.g. 'eu-west-1'.
	 * @param bool   $s3      S3 rules: no path normalisation, x-amz-content-sha256 header.
	 */
	public function __construct( string $service, string $region, bool $s3 = false ) {
		if ( '' === $service || '' === $region ) {
			throw new InvalidArgumentException( 'SigV4 needs a service name and a region.' );
		}
		$this->service = $service;
		$this->region  = $region;
		$this->s3      = $s3;
	}

	/**
	 * A signer for Amazon S3 (and S3-compatible stand-ins) in a region.
	 *
	 * @param string $region Bucket region.
	 */
	public static function for_s3( string $region ): self {
		return new self( 's3', $region, true );
	}

	/**
	 * Hex SHA-256 of a request body, as it goes into the canonical request.
	 *
	 * @param string $body Raw body bytes.
	 */
	public static function payload_hash( string $body ): string {
		return '' === $body ? self::EMPTY_PAYLOAD_SHA256 : hash( 'sha256', $body );
	}

	/**
	 * The x-amz-date value for a Unix time.
	 *
	 * @param int $time Seconds since the epoch.
	 */
	public static function amz_date( int $time ): string {
		return gmdate( self::AMZ_DATE_FORMAT, $time );
	}

	/**
	 * Stage 0: the headers to sign and send, with the ones SigV4 adds.
	 *
	 * Sets x-amz-date, x-amz-security-token (temporary credentials) and, in S3
	 * mode, x-amz-content-sha256, replacing any copies already present (a retry
	 * must not carry the previous attempt's values). A stale Authorization
	 * header is dropped.
	 *
	 * @param array<string, string|string[]> $headers      Request headers, Host included.
	 * @param string                         $amz_date     Timestamp, see amz_date().
	 * @param string                         $payload_hash Hex SHA-256 of the body.
	 * @param string|null                    $token        Session token of temporary credentials.
	 * @return array<string, string|string[]>
	 */
	public function prepare_headers( array $headers, string $amz_date, string $payload_hash, ?string $token = null ): array {
		$added = array( 'x-amz-date' => $amz_date );
		if ( null !== $token && '' !== $token ) {
			$added['x-amz-security-token'] = $token;
		}
		if ( $this->s3 ) {
			$added['x-amz-content-sha256'] = $payload_hash;
		}
		$replaced = array_merge( array_keys( $added ), array( 'authorization' ) );
		foreach ( array_keys( $headers ) as $name ) {
			if ( in_array( strtolower( (string) $name ), $replaced, true ) ) {
				unset( $headers[ $name ] );
			}
		}
		return array_merge( $headers, $added );
	}

	/**
	 * Stage 1a: the canonical URI.
	 *
	 * @param string $path Generic mode: the decoded path. S3 mode: the encoded wire path.
	 */
	public function canonical_uri( string $path ): string {
		if ( $this->s3 ) {
			return '' === $path ? '/' : $path;
		}
		return implode( '/', array_map( 'rawurlencode', explode( '/', self::remove_dot_segments( $path ) ) ) );
	}

	/**
	 * Stage 1b: the canonical query string: each name and value URI-encoded,
	 * sorted by encoded name, then by encoded value for a repeated name.
	 *
	 * @param array<string, string|string[]> $query Decoded parameters.
	 */
	public function canonical_query_string( array $query ): string {
		$pairs = array();
		foreach ( $query as $name => $values ) {
			foreach ( (array) $values as $value ) {
				$pairs[] = array( rawurlencode( (string) $name ), rawurlencode( (string) $value ) );
			}
		}
		// Not a sort of the joined strings: 'Param=' must come before 'Param-3='.
		usort(
			$pairs,
			static function ( array $a, array $b ): int {
				return strcmp( $a[0], $b[0] ) ?: strcmp( $a[1], $b[1] );
			}
		);
		$pairs = array_map(
			static function ( array $pair ): string {
				return $pair[0] . '=' . $pair[1];
			},
			$pairs
		);
		return implode( '&', $pairs );
	}

	/**
	 * Stage 1c: the canonical headers block: lower-case names in order, values
	 * trimmed with inner runs of spaces collapsed, repeated headers joined by
	 * commas in the order given. Ends with a newline.
	 *
	 * @param array<string, string|string[]> $headers Request headers.
	 * @throws InvalidArgumentException When a value holds CR or LF (header injection).
	 */
	public function canonical_headers( array $headers ): string {
		$lines = '';
		foreach ( $this->headers_to_sign( $headers ) as $name => $values ) {
			$lines .= $name . ':' . implode( ',', $values ) . "\n";
		}
		return $lines;
	}

	/**
	 * Stage 1d: the signed headers list, e.g. 'host;x-amz-date'.
	 *
	 * @param array<string, string|string[]> $headers Request headers.
	 */
	public function signed_headers( array $headers ): string {
		return implode( ';', array_keys( $this->headers_to_sign( $headers ) ) );
	}

	/**
	 * Stage 1: the canonical request.
	 *
	 * @param string                         $method       HTTP method.
	 * @param string                         $path         See canonical_uri().
	 * @param array<string, string|string[]> $query        Decoded query parameters.
	 * @param array<string, string|string[]> $headers      Headers as prepared by prepare_headers().
	 * @param string                         $payload_hash Hex SHA-256 of the body.
	 */
	public function canonical_request( string $method, string $path, array $query, array $headers, string $payload_hash ): string {
		return implode(
			"\n",
			array(
				strtoupper( $method ),
				$this->canonical_uri( $path ),
				$this->canonical_query_string( $query ),
				$this->canonical_headers( $headers ),
				$this->signed_headers( $headers ),
				$payload_hash,
			)
		);
	}

	/**
	 * The credential scope: date/region/service/aws4_request.
	 *
	 * @param string $amz_date Timestamp, see amz_date().
	 */
	public function credential_scope( string $amz_date ): string {
		return substr( $amz_date, 0, 8 ) . '/' . $this->region . '/' . $this->service . '/aws4_request';
	}

	/**
	 * Stage 2: the string to sign.
	 *
	 * @param string $amz_date          Timestamp, see amz_date().
	 * @param string $canonical_request From canonical_request().
	 */
	public function string_to_sign( string $amz_date, string $canonical_request ): string {
		return self::ALGORITHM . "\n" . $amz_date . "\n" . $this->credential_scope( $amz_date ) . "\n" . hash( 'sha256', $canonical_request );
	}

	/**
	 * Stage 3a: the signing key (raw bytes), derived from the secret for one day, region and service.
	 *
	 * @param string $secret_access_key Secret access key.
	 * @param string $amz_date          Timestamp, see amz_date().
	 */
	public function signing_key( #[\SensitiveParameter] string $secret_access_key, string $amz_date ): string {
		$key = hash_hmac( 'sha256', substr( $amz_date, 0, 8 ), 'AWS4' . $secret_access_key, true );
		$key = hash_hmac( 'sha256', $this->region, $key, true );
		$key = hash_hmac( 'sha256', $this->service, $key, true );
		return hash_hmac( 'sha256', 'aws4_request', $key, true );
	}

	/**
	 * Stage 3b: the signature, hex.
	 *
	 * @param string $signing_key    From signing_key().
	 * @param string $string_to_sign From string_to_sign().
	 */
	public function signature( #[\SensitiveParameter] string $signing_key, string $string_to_sign ): string {
		return hash_hmac( 'sha256', $string_to_sign, $signing_key );
	}

	/**
	 * Stage 4: the Authorization header value.
	 *
	 * @param string $access_key_id  Access key id (not secret).
	 * @param string $amz_date       Timestamp, see amz_date().
	 * @param string $signed_headers From signed_headers().
	 * @param string $signature      From signature().
	 */
	public function authorization( string $access_key_id, string $amz_date, string $signed_headers, string $signature ): string {
		return self::ALGORITHM . ' Credential=' . $access_key_id . '/' . $this->credential_scope( $amz_date )
			. ', SignedHeaders=' . $signed_headers . ', Signature=' . $signature;
	}

	/**
	 * All stages: the headers to send, Authorization included.
	 *
	 * @param Postbag_Credentials            $credentials  Who signs.
	 * @param string                         $method       HTTP method.
	 * @param string                         $path         See canonical_uri().
	 * @param array<string, string|string[]> $query        Decoded query parameters.
	 * @param array<string, string|string[]> $headers      Request headers, Host included.
	 * @param string                         $payload_hash Hex SHA-256 of the body, see payload_hash().
	 * @param int                            $time         Unix time of signing.
	 * @return array<string, string|string[]>
	 */
	public function sign( Postbag_Credentials $credentials, string $method, string $path, array $query, array $headers, string $payload_hash, int $time ): array {
		$amz_date  = self::amz_date( $time );
		$headers   = $this->prepare_headers( $headers, $amz_date, $payload_hash, $credentials->session_token() );
		$canonical = $this->canonical_request( $method, $path, $query, $headers, $payload_hash );
		$signature = $this->signature(
			$this->signing_key( $credentials->secret_access_key(), $amz_date ),
			$this->string_to_sign( $amz_date, $canonical )
		);

		$headers['Authorization'] = $this->authorization( $credentials->access_key_id(), $amz_date, $this->signed_headers( $headers ), $signature );
		return $headers;
	}

	/**
	 * Lower-cased signable headers in canonical order, each with its trimmed values.
	 *
	 * @param array<string, string|string[]> $headers Request headers.
	 * @return array<string, string[]>
	 * @throws InvalidArgumentException When a value holds CR or LF.
	 */
	private function headers_to_sign( array $headers ): array {
		$signed = array();
		foreach ( $headers as $name => $values ) {
			$name = strtolower( trim( (string) $name ) );
			if ( in_array( $name, self::UNSIGNED_HEADERS, true ) ) {
				continue;
			}
			foreach ( (array) $values as $value ) {
				if ( strpbrk( (string) $value, "\r\n" ) !== false ) {
					throw new InvalidArgumentException( sprintf( 'Header %s holds a line break.', $name ) );
				}
				// "Trimall": trim, and collapse inner runs of spaces and tabs into one space.
				$signed[ $name ][] = preg_replace( '/[ \t]+/', ' ', trim( (string) $value, " \t" ) );
			}
		}
		ksort( $signed, SORT_STRING );
		return $signed;
	}

	/**
	 * RFC 3986 section 5.2.4, plus the removal of empty segments AWS asks for
	 * (botocore's remove_dot_segments).
	 *
	 * @param string $path Decoded path.
	 */
	private static function remove_dot_segments( string $path ): string {
		if ( '' === $path ) {
			return '/';
		}
		$segments = array();
		foreach ( explode( '/', $path ) as $segment ) {
			if ( '..' === $segment ) {
				array_pop( $segments );
			} elseif ( '' !== $segment && '.' !== $segment ) {
				$segments[] = $segment;
			}
		}
		$first = '/' === $path[0] ? '/' : '';
		$last  = '/' === substr( $path, -1 ) && $segments ? '/' : '';
		return $first . implode( '/', $segments ) . $last;
	}
}
