<?php
/**
 * PutObject to S3, many at once, and GetObject, signed with SigV4.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Uploads objects to one bucket in parallel through curl_multi, at most
 * `concurrency` at a time, and reads small objects back (a job's status).
 *
 * Failure is data, not an exception: a network error, a timeout or a 4xx/5xx
 * answer gives a Postbag_S3_Result with ok = false and the reason, so the
 * caller can spool the batch and retry later (or say "not yet" for a 404). Only a programming error (an
 * invalid key, content type or option) throws InvalidArgumentException.
 *
 * Options:
 * - bucket      (required) bucket name;
 * - region      (required) bucket region, e.g. 'eu-west-1';
 * - endpoint    custom endpoint such as a local stand-in, e.g. 'http://127.0.0.1:5000';
 *               default https://s3.<region>.amazonaws.com;
 * - path_style  bool, address the bucket in the path rather than the host name.
 *               Forced for endpoints given as an IP address and for bucket
 *               names that cannot be a host name label (as botocore does);
 * - sse         'AES256' (default) or 'aws:kms';
 * - kms_key_id  KMS key for 'aws:kms' (the bucket's default key when absent);
 * - timeout     seconds per upload, connection included (default 10);
 * - concurrency uploads in flight at once (default 16);
 * - proxy       an HTTP proxy every request goes through: array( 'host' => ..., 'port' => ...,
 *               'auth' => 'user:password' or '' ); absent or null: none (Postbag_Config::s3_options()
 *               fills it from WordPress's WP_PROXY_* constants).
 */
final class Postbag_S3_Client {

	/** The defaults of POSTBAG_UPLOAD_TIMEOUT and _CONCURRENCY in Postbag_Config, which this class loads without. */
	public const DEFAULT_TIMEOUT     = 10;
	public const DEFAULT_CONCURRENCY = 16;

	/** S3 limit on key length, in bytes. */
	private const MAX_KEY_BYTES = 1024;

	/** Longest S3 error message kept in a result. */
	private const MAX_MESSAGE_CHARS = 200;

	/** Most bytes get_object() reads by default: it reads status documents, never payloads. */
	public const MAX_GET_BYTES = 1024 * 1024;

	/** @var string */
	private $bucket;

	/** @var string e.g. 'https' */
	private $scheme;

	/** @var string Host the requests go to, with the port when it is not the scheme's default. */
	private $host;

	/** @var string Encoded path before the key, '' or '/<bucket>' (plus any path of the endpoint). */
	private $base_path;

	/** @var array<string, string> Server-side encryption headers. */
	private $sse_headers;

	/** @var float */
	private $timeout;

	/** @var int */
	private $concurrency;

	/** @var Postbag_Credential_Chain */
	private $credentials;

	/** @var callable(): int */
	private $clock;

	/** @var Postbag_SigV4_Signer */
	private $signer;

	/** @var array<int, mixed> curl options of the proxy, empty for none. */
	private $proxy;

	/**
	 * @param array<string, mixed>     $options     See the class comment.
	 * @param Postbag_Credential_Chain $credentials Who signs.
	 * @param callable(): int|null     $clock       Unix time for signatures; time() by default.
	 * @throws InvalidArgumentException For missing or invalid options.
	 */
	public function __construct( array $options, Postbag_Credential_Chain $credentials, ?callable $clock = null ) {
		$bucket = (string) ( $options['bucket'] ?? '' );
		$region = (string) ( $options['region'] ?? '' );
		if ( ! preg_match( '/^[A-Za-z0-9._-]{3,255}$/', $bucket ) ) {
			throw new InvalidArgumentException( 'The S3 client needs a valid bucket name.' );
		}
		if ( ! preg_match( '/^[a-z0-9-]+$/', $region ) ) {
			throw new InvalidArgumentException( 'The S3 client needs a region such as eu-west-1.' );
		}
		$this->bucket      = $bucket;
		$this->sse_headers = self::sse_headers( (string) ( $options['sse'] ?? 'AES256' ), (string) ( $options['kms_key_id'] ?? '' ) );
		$this->timeout     = (float) ( $options['timeout'] ?? self::DEFAULT_TIMEOUT );
		$this->concurrency = (int) ( $options['concurrency'] ?? self::DEFAULT_CONCURRENCY );
		if ( $this->timeout <= 0 || $this->concurrency < 1 ) {
			throw new InvalidArgumentException( 'The S3 client needs a positive timeout and concurrency.' );
		}
		$this->address( (string) ( $options['endpoint'] ?? '' ), $region, ! empty( $options['path_style'] ) );
		$this->credentials = $credentials;
		$this->clock       = $clock ?? 'time';
		$this->signer      = Postbag_SigV4_Signer::for_s3( $region );
		$this->proxy       = self::proxy_options( $options['proxy'] ?? null );
	}

	/**
	 * @param array{host: string, port: int|string, auth?: string}|null $proxy See the class comment.
	 * @return array<int, mixed>
	 * @throws InvalidArgumentException For a proxy without host or port.
	 */
	private static function proxy_options( ?array $proxy ): array {
		if ( null === $proxy ) {
			return array();
		}
		$host = (string) ( $proxy['host'] ?? '' );
		$port = (int) ( $proxy['port'] ?? 0 );
		if ( '' === $host || $port < 1 || $port > 65535 ) {
			throw new InvalidArgumentException( 'The S3 client\'s proxy needs a host and a port.' );
		}
		$options = array(
			CURLOPT_PROXYTYPE => CURLPROXY_HTTP,
			CURLOPT_PROXY     => $host,
			CURLOPT_PROXYPORT => $port,
		);
		if ( '' !== (string) ( $proxy['auth'] ?? '' ) ) {
			// Basic, as WP_HTTP_Proxy::authentication_header() sends it: sent with the
			// first request (CURLAUTH_ANY waits for a 407 and sends each body twice).
			$options[ CURLOPT_PROXYAUTH ]    = CURLAUTH_BASIC;
			$options[ CURLOPT_PROXYUSERPWD ] = (string) $proxy['auth'];
		}
		return $options;
	}

	/**
	 * Uploads each body under its key, in parallel.
	 *
	 * @param array<string, string> $bodies       Key => body.
	 * @param string                $content_type Content-Type of every object.
	 * @return array<string, Postbag_S3_Result> Key => outcome, in the order given.
	 * @throws InvalidArgumentException For an invalid key or content type.
	 */
	public function put_objects( array $bodies, string $content_type = 'application/json' ): array {
		foreach ( array_keys( $bodies ) as $key ) {
			self::check_key( (string) $key );
		}
		if ( '' === $content_type || false !== strpbrk( $content_type, "\r\n" ) ) {
			throw new InvalidArgumentException( 'Invalid content type.' );
		}
		if ( ! $bodies ) {
			return array();
		}
		try {
			$credentials = $this->credentials->get();
		} catch ( Postbag_Credentials_Exception $e ) {
			$failed = new Postbag_S3_Result( false, 0, $e->getMessage() );
			return array_map(
				static function () use ( $failed ): Postbag_S3_Result {
					return $failed;
				},
				$bodies
			);
		}
		return $this->transfer(
			array_keys( $bodies ),
			function ( string $key ) use ( $bodies, $content_type, $credentials ) {
				$request = $this->signed_request( $key, $bodies[ $key ], $content_type, $credentials );
				return $this->handle(
					$request,
					array(
						CURLOPT_CUSTOMREQUEST => 'PUT',
						CURLOPT_POSTFIELDS    => $bodies[ $key ],
					)
				);
			}
		);
	}

	/**
	 * Reads one object, with the same timeout, signing and failure results as
	 * an upload. A missing object answers 404, or 403 where the credentials
	 * may not list the bucket (S3 then hides whether it exists).
	 *
	 * @param string $key       Object key.
	 * @param int    $max_bytes Larger objects fail (curl error 63) rather than fill memory.
	 * @return Postbag_S3_Result Its `body` holds the object when ok.
	 * @throws InvalidArgumentException For an invalid key or limit.
	 */
	public function get_object( string $key, int $max_bytes = self::MAX_GET_BYTES ): Postbag_S3_Result {
		self::check_key( $key );
		if ( $max_bytes < 1 ) {
			throw new InvalidArgumentException( 'get_object() needs a positive size limit.' );
		}
		try {
			$credentials = $this->credentials->get();
		} catch ( Postbag_Credentials_Exception $e ) {
			return new Postbag_S3_Result( false, 0, $e->getMessage() );
		}
		return $this->transfer(
			array( $key ),
			function ( string $key ) use ( $credentials, $max_bytes ) {
				return $this->handle(
					$this->signed_get( $key, $credentials ),
					array(
						CURLOPT_HTTPGET     => true,
						// S3 always sends Content-Length, which curl checks before reading the body.
						CURLOPT_MAXFILESIZE => $max_bytes,
					)
				);
			}
		)[ $key ];
	}

	/**
	 * Uploads one object (put_objects() with one key).
	 *
	 * @param string $key          Object key.
	 * @param string $body         Object bytes.
	 * @param string $content_type Content-Type.
	 * @throws InvalidArgumentException For an invalid key or content type.
	 */
	public function put_object( string $key, string $body, string $content_type = 'application/json' ): Postbag_S3_Result {
		return $this->put_objects( array( $key => $body ), $content_type )[ $key ];
	}

	/**
	 * The URL and signed headers of a PutObject, as put_objects() sends it.
	 *
	 * @param string              $key          Object key.
	 * @param string              $body         Object bytes.
	 * @param string              $content_type Content-Type.
	 * @param Postbag_Credentials $credentials  Who signs.
	 * @return array{url: string, headers: array<string, string>}
	 */
	public function signed_request( string $key, string $body, string $content_type, Postbag_Credentials $credentials ): array {
		$headers = array_merge( array( 'Content-Type' => $content_type ), $this->sse_headers );
		return $this->sign( 'PUT', $key, $headers, $body, $credentials );
	}

	/**
	 * The URL and signed headers of a GetObject, as get_object() sends it
	 * (no encryption headers: S3 refuses them on a GET of an SSE-S3 or SSE-KMS object).
	 *
	 * @param string              $key         Object key.
	 * @param Postbag_Credentials $credentials Who signs.
	 * @return array{url: string, headers: array<string, string>}
	 */
	public function signed_get( string $key, Postbag_Credentials $credentials ): array {
		return $this->sign( 'GET', $key, array(), '', $credentials );
	}

	/**
	 * @param string                $method      HTTP method.
	 * @param string                $key         Object key.
	 * @param array<string, string> $headers     Headers besides Host.
	 * @param string                $body        Request body.
	 * @param Postbag_Credentials   $credentials Who signs.
	 * @return array{url: string, headers: array<string, string>}
	 */
	private function sign( string $method, string $key, array $headers, string $body, Postbag_Credentials $credentials ): array {
		$path    = $this->base_path . '/' . self::encode_key( $key );
		$headers = $this->signer->sign(
			$credentials,
			$method,
			$path,
			array(),
			array_merge( array( 'Host' => $this->host ), $headers ),
			Postbag_SigV4_Signer::payload_hash( $body ),
			(int) ( $this->clock )()
		);
		return array(
			'url'     => $this->scheme . '://' . $this->host . $path,
			'headers' => $headers,
		);
	}

	/**
	 * An object key URI-encoded the S3 way: each segment encoded, slashes kept.
	 *
	 * @param string $key Object key.
	 */
	public static function encode_key( string $key ): string {
		return implode( '/', array_map( 'rawurlencode', explode( '/', $key ) ) );
	}

	/**
	 * Runs the requests through curl_multi, starting a new one as each ends.
	 *
	 * @param string[]                          $keys        Object keys, one request each.
	 * @param callable(string): CurlHandle|resource $make_handle A ready curl handle for a key.
	 * @return array<string, Postbag_S3_Result>
	 */
	private function transfer( array $keys, callable $make_handle ): array {
		$results = array_fill_keys( $keys, null );
		$waiting = $keys;
		$active  = array(); // spl_object_id( handle ) => array( key, handle ).
		$multi   = curl_multi_init();
		do {
			while ( $waiting && count( $active ) < $this->concurrency ) {
				$key    = array_shift( $waiting );
				$handle = $make_handle( (string) $key );
				curl_multi_add_handle( $multi, $handle );
				$active[ spl_object_id( $handle ) ] = array( $key, $handle );
			}
			curl_multi_exec( $multi, $running );
			while ( false !== ( $done = curl_multi_info_read( $multi ) ) ) {
				list( $key, $handle ) = $active[ spl_object_id( $done['handle'] ) ];
				unset( $active[ spl_object_id( $handle ) ] );
				$results[ $key ] = self::result( $handle, $done['result'] );
				curl_multi_remove_handle( $multi, $handle );
				curl_close( $handle );
			}
			if ( $running && -1 === curl_multi_select( $multi, 0.5 ) ) {
				usleep( 1000 ); // select() failed (no descriptors yet): don't spin.
			}
		} while ( $waiting || $active );
		curl_multi_close( $multi );
		return $results;
	}

	/**
	 * A curl handle for one signed request, with the client's timeout.
	 *
	 * @param array{url: string, headers: array<string, string>} $request From sign().
	 * @param array<int, mixed>                                  $options The method's own curl options.
	 * @return CurlHandle|resource
	 */
	private function handle( array $request, array $options ) {
		$lines = array();
		foreach ( $request['headers'] as $name => $value ) {
			$lines[] = $name . ': ' . $value;
		}
		// No "Expect: 100-continue" round trip before each body.
		$lines[] = 'Expect:';
		$handle  = curl_init( $request['url'] );
		$timeout = (int) ceil( $this->timeout * 1000 );
		curl_setopt_array(
			$handle,
			$options + $this->proxy + array(
				CURLOPT_HTTPHEADER        => $lines,
				CURLOPT_RETURNTRANSFER    => true,
				CURLOPT_CONNECTTIMEOUT_MS => $timeout,
				CURLOPT_TIMEOUT_MS        => $timeout,
				CURLOPT_FOLLOWLOCATION    => false,
				CURLOPT_PROTOCOLS         => CURLPROTO_HTTP | CURLPROTO_HTTPS,
			)
		);
		return $handle;
	}

	/**
	 * The outcome of a finished transfer.
	 *
	 * @param CurlHandle|resource $handle Finished handle.
	 * @param int                 $errno  curl's result code for it.
	 */
	private static function result( $handle, int $errno ): Postbag_S3_Result {
		$status = (int) curl_getinfo( $handle, CURLINFO_RESPONSE_CODE );
		if ( CURLE_OK !== $errno ) {
			$message = curl_error( $handle );
			return new Postbag_S3_Result( false, $status, sprintf( 'curl error %d: %s', $errno, '' === $message ? curl_strerror( $errno ) : $message ) );
		}
		if ( $status >= 200 && $status < 300 ) {
			return new Postbag_S3_Result( true, $status, '', (string) curl_multi_getcontent( $handle ) );
		}
		// S3's error document: <Error><Code>..</Code><Message>..</Message>...; only those two
		// are kept (SignatureDoesNotMatch also echoes the string to sign).
		$body    = (string) curl_multi_getcontent( $handle );
		$code    = preg_match( '~<Code>([^<]{1,100})</Code>~', $body, $match ) ? ' ' . $match[1] : '';
		$message = preg_match( '~<Message>([^<]*)</Message>~', $body, $match ) ? ': ' . substr( html_entity_decode( $match[1], ENT_QUOTES | ENT_XML1 ), 0, self::MAX_MESSAGE_CHARS ) : '';
		return new Postbag_S3_Result( false, $status, 'HTTP ' . $status . $code . $message );
	}

	/**
	 * Sets scheme, host and base path from the endpoint and addressing style.
	 *
	 * @param string $endpoint   Custom endpoint, or '' for AWS.
	 * @param string $region     Bucket region.
	 * @param bool   $path_style Whether the bucket goes in the path.
	 * @throws InvalidArgumentException For an endpoint that is not an http(s) URL.
	 */
	private function address( string $endpoint, string $region, bool $path_style ): void {
		$endpoint = '' === $endpoint ? "https://s3.$region.amazonaws.com" : $endpoint;
		// phpcs:ignore WordPress.WP.AlternativeFunctions.parse_url_parse_url -- no WordPress needed here.
		$parts  = parse_url( $endpoint );
		$scheme = strtolower( $parts['scheme'] ?? '' );
		if ( ! in_array( $scheme, array( 'http', 'https' ), true ) || empty( $parts['host'] ) || isset( $parts['query'] ) ) {
			throw new InvalidArgumentException( 'The S3 endpoint must be an http or https URL.' );
		}
		$host = strtolower( $parts['host'] );
		if ( isset( $parts['port'] ) && ( 'https' === $scheme ? 443 : 80 ) !== $parts['port'] ) {
			$host .= ':' . $parts['port'];
		}
		$is_ip     = false !== filter_var( trim( $parts['host'], '[]' ), FILTER_VALIDATE_IP );
		$dns_label = preg_match( '/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/', $this->bucket )
			|| ( 'http' === $scheme && preg_match( '/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/', $this->bucket ) );

		$this->scheme    = $scheme;
		$this->base_path = rtrim( $parts['path'] ?? '', '/' );
		if ( $path_style || $is_ip || ! $dns_label ) {
			$this->host       = $host;
			$this->base_path .= '/' . $this->bucket;
		} else {
			$this->host = $this->bucket . '.' . $host;
		}
	}

	/**
	 * The server-side encryption headers to send.
	 *
	 * @param string $sse        'AES256' or 'aws:kms'.
	 * @param string $kms_key_id KMS key id or ARN, for 'aws:kms'.
	 * @return array<string, string>
	 * @throws InvalidArgumentException For another mode, or a KMS key without 'aws:kms'.
	 */
	private static function sse_headers( string $sse, string $kms_key_id ): array {
		if ( ! in_array( $sse, array( 'AES256', 'aws:kms' ), true ) ) {
			throw new InvalidArgumentException( "Server-side encryption must be 'AES256' or 'aws:kms'." );
		}
		if ( '' !== $kms_key_id && 'aws:kms' !== $sse ) {
			throw new InvalidArgumentException( "A KMS key id needs server-side encryption 'aws:kms'." );
		}
		if ( false !== strpbrk( $kms_key_id, "\r\n" ) ) {
			throw new InvalidArgumentException( 'Invalid KMS key id.' );
		}
		$headers = array( 'x-amz-server-side-encryption' => $sse );
		if ( '' !== $kms_key_id ) {
			$headers['x-amz-server-side-encryption-aws-kms-key-id'] = $kms_key_id;
		}
		return $headers;
	}

	/**
	 * S3 keys are 1 to 1024 bytes of UTF-8.
	 *
	 * @param string $key Object key.
	 * @throws InvalidArgumentException When it is not.
	 */
	private static function check_key( string $key ): void {
		if ( '' === $key || strlen( $key ) > self::MAX_KEY_BYTES || ! preg_match( '//u', $key ) ) {
			throw new InvalidArgumentException( 'An S3 key must be 1 to 1024 bytes of UTF-8.' );
		}
	}
}
