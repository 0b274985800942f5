<?php
/**
 * Where the AWS credentials come from, in order.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Asks credential providers in turn and returns the first credentials found.
 *
 * The default chain, like the AWS SDKs': wp-config.php constants, environment
 * variables, the ECS container endpoint, the EC2 instance role through IMDSv2.
 *
 * A provider is a callable that returns Postbag_Credentials, or throws
 * Postbag_Credentials_Exception saying why it has none (not configured, or
 * its endpoint failed); the chain then asks the next one. Temporary
 * credentials (those with an expiry) are kept in a static, in memory only, for
 * the rest of the PHP request and until REFRESH_MARGIN seconds before they
 * expire: never in options, transients or the database, never logged.
 */
final class Postbag_Credential_Chain {

	/**
	 * The wp-config.php constants holding the secrets: access key id, secret
	 * access key, session token. Only this class reads their values; others
	 * may only ask whether they are defined.
	 */
	public const CONSTANTS = array( 'POSTBAG_AWS_ACCESS_KEY_ID', 'POSTBAG_AWS_SECRET_ACCESS_KEY', 'POSTBAG_AWS_SESSION_TOKEN' );

	/** Seconds before expiry at which cached temporary credentials are fetched again. */
	public const REFRESH_MARGIN = 300;

	/** Host of the ECS container credentials endpoint for AWS_CONTAINER_CREDENTIALS_RELATIVE_URI. */
	public const ECS_ENDPOINT = 'http://169.254.170.2';

	/** The EC2 instance metadata service, unless AWS_EC2_METADATA_SERVICE_ENDPOINT says otherwise. */
	public const IMDS_ENDPOINT = 'http://169.254.169.254';

	/** Seconds to wait for a metadata endpoint (botocore: 1 s for IMDS, 2 s for containers). */
	public const IMDS_TIMEOUT = 1;
	public const ECS_TIMEOUT  = 2;

	/** Lifetime asked for an IMDSv2 session token, in seconds. */
	private const IMDS_TOKEN_TTL = 21600;

	/** Hosts a plain-http AWS_CONTAINER_CREDENTIALS_FULL_URI may name (botocore's list). */
	private const CONTAINER_HOSTS = array( 'localhost', '169.254.170.2', '169.254.170.23', 'fd00:ec2::23' );

	/** @var array<string, Postbag_Credentials> Temporary credentials by provider name, for this request only. */
	private static $cache = array();

	/** @var array<string, callable(): ?Postbag_Credentials> */
	private $providers;

	/** @var callable(): int */
	private $clock;

	/**
	 * @param array<string|int, callable(): ?Postbag_Credentials> $providers In order; keys name them in messages.
	 * @param callable(): int|null                                $clock     Unix time; time() by default.
	 */
	public function __construct( array $providers, ?callable $clock = null ) {
		$this->providers = array();
		foreach ( $providers as $name => $provider ) {
			$this->providers[ is_int( $name ) ? 'provider ' . ( $name + 1 ) : $name ] = $provider;
		}
		$this->clock = $clock ?? 'time';
	}

	/**
	 * Constants, environment, ECS container endpoint, EC2 instance role.
	 *
	 * @param callable(): int|null $clock Unix time; time() by default.
	 */
	public static function default_chain( ?callable $clock = null ): self {
		return new self(
			array(
				'constants'   => array( __CLASS__, 'from_constants' ),
				'environment' => array( __CLASS__, 'from_environment' ),
				'ecs'         => self::ecs_provider(),
				'imds'        => self::imds_provider(),
			),
			$clock
		);
	}

	/**
	 * The first credentials a provider yields.
	 *
	 * @throws Postbag_Credentials_Exception Naming every provider tried and why it had none.
	 */
	public function get(): Postbag_Credentials {
		$now   = (int) ( $this->clock )();
		$tried = array();
		foreach ( $this->providers as $name => $provider ) {
			$cached = self::$cache[ $name ] ?? null;
			if ( null !== $cached && ! $cached->expires_within( $now, self::REFRESH_MARGIN ) ) {
				return $cached;
			}
			try {
				$credentials = $provider();
			} catch ( Postbag_Credentials_Exception $e ) {
				// A refresh that fails may still fall back on credentials not yet expired.
				if ( null !== $cached && ! $cached->expires_within( $now, 0 ) ) {
					return $cached;
				}
				$tried[] = $name . ' (' . $e->getMessage() . ')';
				continue;
			}
			if ( ! $credentials instanceof Postbag_Credentials ) {
				$tried[] = $name . ' (no credentials)';
				continue;
			}
			if ( null !== $credentials->expires_at() ) {
				self::$cache[ $name ] = $credentials;
			}
			return $credentials;
		}
		throw new Postbag_Credentials_Exception( 'No AWS credentials found. Tried: ' . implode( '; ', $tried ) . '.' );
	}

	/**
	 * Drops cached temporary credentials (tests; a key rotated mid-request).
	 */
	public static function forget_cached(): void {
		self::$cache = array();
	}

	/**
	 * POSTBAG_AWS_ACCESS_KEY_ID, POSTBAG_AWS_SECRET_ACCESS_KEY and optionally
	 * POSTBAG_AWS_SESSION_TOKEN, defined in wp-config.php.
	 *
	 * @throws Postbag_Credentials_Exception When they are not (both) defined.
	 */
	public static function from_constants(): Postbag_Credentials {
		$value = static function ( string $name ): string {
			return defined( $name ) ? (string) constant( $name ) : '';
		};
		list( $key_id, $secret, $token ) = self::CONSTANTS;
		return self::from_pair(
			'constants',
			array( $key_id, $secret ),
			$value( $key_id ),
			$value( $secret ),
			$value( $token )
		);
	}

	/**
	 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_SESSION_TOKEN
	 * from the environment.
	 *
	 * @throws Postbag_Credentials_Exception When they are not (both) set.
	 */
	public static function from_environment(): Postbag_Credentials {
		return self::from_pair(
			'environment',
			array( 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY' ),
			(string) getenv( 'AWS_ACCESS_KEY_ID' ),
			(string) getenv( 'AWS_SECRET_ACCESS_KEY' ),
			(string) getenv( 'AWS_SESSION_TOKEN' )
		);
	}

	/**
	 * The ECS (and EKS Pod Identity) container credentials endpoint:
	 * AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on 169.254.170.2, or
	 * AWS_CONTAINER_CREDENTIALS_FULL_URI with the Authorization header from
	 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN.
	 * The environment is read on each call.
	 *
	 * @param string $relative_endpoint Where a relative URI points (tests point it at a fake).
	 * @return Closure(): Postbag_Credentials
	 */
	public static function ecs_provider( string $relative_endpoint = self::ECS_ENDPOINT ): Closure {
		return static function () use ( $relative_endpoint ): Postbag_Credentials {
			$relative = (string) getenv( 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI' );
			$full     = (string) getenv( 'AWS_CONTAINER_CREDENTIALS_FULL_URI' );
			$headers  = array();
			if ( '' !== $relative ) {
				$url = $relative_endpoint . $relative;
			} elseif ( '' !== $full ) {
				self::check_container_uri( $full );
				$url   = $full;
				$token = self::container_token();
				if ( '' !== $token ) {
					$headers[] = 'Authorization: ' . $token;
				}
			} else {
				throw new Postbag_Credentials_Exception( 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI not set' );
			}
			list( $status, $body ) = self::http( 'GET', $url, $headers, self::ECS_TIMEOUT );
			if ( 200 !== $status ) {
				throw new Postbag_Credentials_Exception( "container endpoint answered HTTP $status" );
			}
			return self::from_json( 'ecs', 'container endpoint', $body );
		};
	}

	/**
	 * The EC2 instance role through IMDSv2: PUT a session token, GET the role
	 * name, GET its credentials. AWS_EC2_METADATA_DISABLED=true turns it off;
	 * AWS_EC2_METADATA_SERVICE_ENDPOINT moves it. The environment is read on each call.
	 *
	 * @return Closure(): Postbag_Credentials
	 */
	public static function imds_provider(): Closure {
		return static function (): Postbag_Credentials {
			if ( 'true' === strtolower( (string) getenv( 'AWS_EC2_METADATA_DISABLED' ) ) ) {
				throw new Postbag_Credentials_Exception( 'disabled by AWS_EC2_METADATA_DISABLED' );
			}
			$endpoint = rtrim( (string) getenv( 'AWS_EC2_METADATA_SERVICE_ENDPOINT' ), '/' );
			$endpoint = '' === $endpoint ? self::IMDS_ENDPOINT : $endpoint;

			list( $status, $token ) = self::http( 'PUT', $endpoint . '/latest/api/token', array( 'X-aws-ec2-metadata-token-ttl-seconds: ' . self::IMDS_TOKEN_TTL ), self::IMDS_TIMEOUT );
			$token                  = trim( $token );
			if ( 200 !== $status || '' === $token || false !== strpbrk( $token, "\r\n" ) ) {
				throw new Postbag_Credentials_Exception( "instance metadata token request answered HTTP $status" );
			}
			$headers = array( 'X-aws-ec2-metadata-token: ' . $token );
			$base    = $endpoint . '/latest/meta-data/iam/security-credentials/';

			list( $status, $roles ) = self::http( 'GET', $base, $headers, self::IMDS_TIMEOUT );
			$role                   = trim( (string) strtok( $roles, "\n" ) );
			if ( 200 !== $status || '' === $role ) {
				throw new Postbag_Credentials_Exception( "no instance role (HTTP $status)" );
			}
			list( $status, $body ) = self::http( 'GET', $base . rawurlencode( $role ), $headers, self::IMDS_TIMEOUT );
			if ( 200 !== $status ) {
				throw new Postbag_Credentials_Exception( "instance role credentials answered HTTP $status" );
			}
			return self::from_json( 'imds', 'instance metadata', $body );
		};
	}

	/**
	 * Long-term credentials from a key id and secret that come as a pair.
	 *
	 * @param string   $source Provider name.
	 * @param string[] $names  Names of the key id and secret settings, for messages.
	 * @param string   $id     Access key id, '' if unset.
	 * @param string   $secret Secret access key, '' if unset.
	 * @param string   $token  Session token, '' if unset.
	 * @throws Postbag_Credentials_Exception When either is missing.
	 */
	private static function from_pair( string $source, array $names, string $id, #[\SensitiveParameter] string $secret, #[\SensitiveParameter] string $token ): Postbag_Credentials {
		if ( '' === $id && '' === $secret ) {
			throw new Postbag_Credentials_Exception( implode( ' / ', $names ) . ' not set' );
		}
		if ( '' === $id || '' === $secret ) {
			throw new Postbag_Credentials_Exception( sprintf( '%s set without %s', '' === $id ? $names[1] : $names[0], '' === $id ? $names[0] : $names[1] ) );
		}
		return new Postbag_Credentials( $id, $secret, $token, null, $source );
	}

	/**
	 * Temporary credentials from a metadata endpoint's JSON answer.
	 *
	 * @param string $source Provider name.
	 * @param string $what   The endpoint, for messages.
	 * @param string $json   AccessKeyId, SecretAccessKey, Token, Expiration (and Code from IMDS).
	 * @throws Postbag_Credentials_Exception When the answer holds no credentials; the body is never quoted.
	 */
	private static function from_json( string $source, string $what, #[\SensitiveParameter] string $json ): Postbag_Credentials {
		$data = json_decode( $json, true );
		if ( ! is_array( $data ) || empty( $data['AccessKeyId'] ) || empty( $data['SecretAccessKey'] ) ) {
			throw new Postbag_Credentials_Exception( "$what answered without credentials" );
		}
		if ( isset( $data['Code'] ) && 'Success' !== $data['Code'] ) {
			throw new Postbag_Credentials_Exception( sprintf( '%s answered Code %s', $what, substr( (string) $data['Code'], 0, 64 ) ) );
		}
		$expires = isset( $data['Expiration'] ) ? strtotime( (string) $data['Expiration'] ) : false;
		return new Postbag_Credentials(
			(string) $data['AccessKeyId'],
			(string) $data['SecretAccessKey'],
			isset( $data['Token'] ) ? (string) $data['Token'] : null,
			false === $expires ? null : $expires,
			$source
		);
	}

	/**
	 * A full container URI must be https, or plain http to a loopback or the
	 * ECS / EKS link-local hosts, as in botocore: the token must not travel
	 * in clear anywhere else.
	 *
	 * @param string $uri AWS_CONTAINER_CREDENTIALS_FULL_URI.
	 * @throws Postbag_Credentials_Exception For any other URI.
	 */
	private static function check_container_uri( string $uri ): void {
		// phpcs:ignore WordPress.WP.AlternativeFunctions.parse_url_parse_url -- no WordPress needed here.
		$parts  = parse_url( $uri );
		$scheme = strtolower( $parts['scheme'] ?? '' );
		$host   = strtolower( trim( $parts['host'] ?? '', '[]' ) );
		if ( 'https' === $scheme ) {
			return;
		}
		$loopback = '::1' === $host || 0 === strpos( $host, '127.' );
		if ( 'http' !== $scheme || ! ( $loopback || in_array( $host, self::CONTAINER_HOSTS, true ) ) ) {
			throw new Postbag_Credentials_Exception( 'AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, or http to a loopback or ECS/EKS host' );
		}
	}

	/**
	 * The container Authorization token: from the file named by
	 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (EKS rotates it), else
	 * AWS_CONTAINER_AUTHORIZATION_TOKEN.
	 *
	 * @throws Postbag_Credentials_Exception When the file cannot be read or the token holds a line break.
	 */
	private static function container_token(): string {
		$file = (string) getenv( 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE' );
		if ( '' !== $file ) {
			$token = is_readable( $file ) ? file_get_contents( $file ) : false;
			if ( false === $token ) {
				throw new Postbag_Credentials_Exception( 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE cannot be read' );
			}
		} else {
			$token = (string) getenv( 'AWS_CONTAINER_AUTHORIZATION_TOKEN' );
		}
		$token = trim( $token );
		if ( false !== strpbrk( $token, "\r\n" ) ) {
			throw new Postbag_Credentials_Exception( 'the container authorization token holds a line break' );
		}
		return $token;
	}

	/**
	 * One short request to a metadata endpoint, never through a proxy.
	 *
	 * @param string   $method  GET or PUT.
	 * @param string   $url     Endpoint URL.
	 * @param string[] $headers "Name: value" lines.
	 * @param int      $timeout Seconds for the whole exchange.
	 * @return array{0: int, 1: string} Status and body.
	 * @throws Postbag_Credentials_Exception When no answer comes.
	 */
	private static function http( string $method, string $url, array $headers, int $timeout ): array {
		$curl = curl_init( $url );
		curl_setopt_array(
			$curl,
			array(
				CURLOPT_CUSTOMREQUEST  => $method,
				CURLOPT_HTTPHEADER     => $headers,
				CURLOPT_RETURNTRANSFER => true,
				CURLOPT_CONNECTTIMEOUT => $timeout,
				CURLOPT_TIMEOUT        => $timeout,
				CURLOPT_FOLLOWLOCATION => false,
				CURLOPT_PROTOCOLS      => CURLPROTO_HTTP | CURLPROTO_HTTPS,
				CURLOPT_NOPROXY        => '*',
			)
		);
		$body   = curl_exec( $curl );
		$status = (int) curl_getinfo( $curl, CURLINFO_RESPONSE_CODE );
		$error  = curl_error( $curl );
		curl_close( $curl );
		if ( ! is_string( $body ) ) {
			throw new Postbag_Credentials_Exception( 'no answer: ' . $error );
		}
		return array( $status, $body );
	}
}
