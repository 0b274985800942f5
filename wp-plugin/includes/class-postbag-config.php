<?php
/**
 * Settings read from wp-config.php constants.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Every setting of the plugin, read once from `POSTBAG_*` constants.
 *
 * Secrets (the POSTBAG_AWS_* keys, Postbag_Credential_Chain::CONSTANTS) are
 * deliberately absent: only the credential chain reads them, so they never
 * pass through options, notices or logs. Where objects go is not a setting
 * either: see Postbag_Batch::PREFIX.
 */
final class Postbag_Config {

	/** Setting name => [constant, default]. */
	const SETTINGS = array(
		'bucket'                      => array( 'POSTBAG_BUCKET', '' ),
		'region'                      => array( 'POSTBAG_REGION', 'us-east-1' ),
		'endpoint'                    => array( 'POSTBAG_ENDPOINT', '' ),
		'path_style'                  => array( 'POSTBAG_PATH_STYLE', false ),
		'sse'                         => array( 'POSTBAG_SSE', 'AES256' ),
		'kms_key_id'                  => array( 'POSTBAG_KMS_KEY_ID', '' ),
		'marker_address'              => array( 'POSTBAG_MARKER_ADDRESS', 'nonpriority@asynchronous.mail' ),
		'marker_prefix'               => array( 'POSTBAG_MARKER_PREFIX', '[Non-priority!]' ),
		'chunk_max_mails'             => array( 'POSTBAG_CHUNK_MAX_MAILS', 25 ),
		'chunk_max_bytes'             => array( 'POSTBAG_CHUNK_MAX_BYTES', 5242880 ),
		'inline_attachment_max_bytes' => array( 'POSTBAG_INLINE_ATTACHMENT_MAX_BYTES', 262144 ),
		'spool_dir'                   => array( 'POSTBAG_SPOOL_DIR', '' ),
		'upload_timeout'              => array( 'POSTBAG_UPLOAD_TIMEOUT', 10 ),
		'upload_concurrency'          => array( 'POSTBAG_UPLOAD_CONCURRENCY', 16 ),
		'allowed_senders'             => array( 'POSTBAG_ALLOWED_SENDERS', '' ),
		'unsubscribe_mailto'          => array( 'POSTBAG_UNSUBSCRIBE_MAILTO', '' ),
		'from'                        => array( 'POSTBAG_FROM', '' ),
		'stuck_after_minutes'         => array( 'POSTBAG_STUCK_AFTER_MINUTES', 15 ),
		'weekly_summary'              => array( 'POSTBAG_WEEKLY_SUMMARY', true ),
		'log_days'                    => array( 'POSTBAG_LOG_DAYS', 30 ),
	);

	/** Constants of the plugin that are not settings (names only: a misspelt one is named in Site Health). */
	const OTHER_CONSTANTS = array( 'POSTBAG_VERSION', 'POSTBAG_PLUGIN_FILE' );

	/** @var array<string, mixed> */
	private $values = array();

	/**
	 * @param array<string, mixed> $values Setting name => value; missing names take their default.
	 */
	public function __construct( array $values = array() ) {
		$unknown = array_diff_key( $values, self::SETTINGS );
		if ( $unknown ) {
			throw new InvalidArgumentException( 'Unknown Postbag setting: ' . implode( ', ', array_keys( $unknown ) ) );
		}
		foreach ( self::SETTINGS as $name => $setting ) {
			$this->values[ $name ] = self::cast( $values[ $name ] ?? $setting[1], $setting[1] );
		}
	}

	/**
	 * The settings a site defined in wp-config.php; `$overrides` win (tests, benchmarks).
	 *
	 * @param array<string, mixed> $overrides Setting name => value.
	 */
	public static function from_constants( array $overrides = array() ): self {
		$values = array();
		foreach ( self::SETTINGS as $name => $setting ) {
			if ( defined( $setting[0] ) ) {
				$values[ $name ] = constant( $setting[0] );
			}
		}
		return new self( array_merge( $values, $overrides ) );
	}

	/**
	 * Which constants a site defined, for Site Health: names only, never values.
	 *
	 * @return array<string, bool> Constant name => defined.
	 */
	public static function defined_constants(): array {
		// POSTBAG_UNSUBSCRIBE_SECRET: read by Postbag_Unsubscribe_Token only, like the AWS keys by the chain.
		$names = array_merge( array_column( self::SETTINGS, 0 ), Postbag_Credential_Chain::CONSTANTS, array( 'POSTBAG_UNSUBSCRIBE_SECRET' ) );
		return array_combine( $names, array_map( 'defined', $names ) );
	}

	/**
	 * `POSTBAG_*` constants this plugin does not read, e.g. a misspelt
	 * POSTBAG_BUKET. Names only: the value may be a secret.
	 *
	 * @return string[]
	 */
	public static function unknown_constants(): array {
		/**
		 * Filters the `POSTBAG_*` constant names Postbag knows (an add-on may read its own).
		 *
		 * @param string[] $known Constant names.
		 */
		$known   = (array) apply_filters( 'postbag_known_constants', array_merge( array_keys( self::defined_constants() ), self::OTHER_CONSTANTS ) );
		$defined = array_keys( get_defined_constants( true )['user'] ?? array() );
		return array_values(
			array_filter(
				$defined,
				static function ( string $name ) use ( $known ): bool {
					return 0 === strpos( $name, 'POSTBAG_' ) && ! in_array( $name, $known, true );
				}
			)
		);
	}

	/**
	 * The known constant closest to a misspelt one, or '' when none is close.
	 *
	 * @param string $name An unknown constant.
	 */
	public static function closest_constant( string $name ): string {
		$best     = '';
		$distance = 4; // More edits than this is another name, not a typo.
		foreach ( array_keys( self::defined_constants() ) as $known ) {
			$edits = levenshtein( $name, $known );
			if ( $edits < $distance ) {
				$best     = $known;
				$distance = $edits;
			}
		}
		return $best;
	}

	/**
	 * Coerces a constant's value to its default's type (constants may be strings).
	 *
	 * @param mixed $value   Value given.
	 * @param mixed $default Default, whose type wins.
	 * @return mixed
	 */
	private static function cast( $value, $default ) {
		if ( is_bool( $default ) ) {
			return filter_var( $value, FILTER_VALIDATE_BOOLEAN );
		}
		if ( is_int( $default ) ) {
			return max( 1, (int) $value );
		}
		return trim( (string) $value );
	}

	/** Uploading needs a bucket; without one mail is not intercepted. */
	public function is_configured(): bool {
		return '' !== $this->values['bucket'];
	}

	/**
	 * One setting by name (see SETTINGS).
	 *
	 * @param string $name Setting name.
	 * @return mixed
	 */
	public function get( string $name ) {
		if ( ! array_key_exists( $name, $this->values ) ) {
			throw new InvalidArgumentException( "Unknown Postbag setting: $name" );
		}
		return $this->values[ $name ];
	}

	/** Options for Postbag_S3_Client. */
	public function s3_options(): array {
		return array(
			'bucket'      => $this->values['bucket'],
			'region'      => $this->values['region'],
			'endpoint'    => $this->values['endpoint'],
			'path_style'  => $this->values['path_style'],
			'sse'         => $this->values['sse'],
			'kms_key_id'  => $this->values['kms_key_id'],
			'timeout'     => $this->values['upload_timeout'],
			'concurrency' => $this->values['upload_concurrency'],
			'proxy'       => self::wordpress_proxy( $this->endpoint_url() ),
		);
	}

	/** The URL requests go to, for WP_PROXY_BYPASS_HOSTS: the endpoint, or the region's S3 host. */
	private function endpoint_url(): string {
		return '' !== $this->values['endpoint'] ? $this->values['endpoint'] : 'https://s3.' . $this->values['region'] . '.amazonaws.com';
	}

	/**
	 * WordPress's proxy (WP_PROXY_HOST, _PORT, _USERNAME, _PASSWORD), unless
	 * WP_PROXY_BYPASS_HOSTS or the `pre_http_send_through_proxy` filter says
	 * `$url` goes direct: the same rules as the WordPress HTTP API, so uploads
	 * leave a site behind a proxy the way its other requests do.
	 *
	 * @param string $url Where the requests go.
	 * @return array{host: string, port: int, auth: string}|null
	 */
	public static function wordpress_proxy( string $url ): ?array {
		if ( ! class_exists( 'WP_HTTP_Proxy' ) ) {
			return null;
		}
		$proxy = new WP_HTTP_Proxy();
		if ( ! $proxy->is_enabled() || ! $proxy->send_through_proxy( $url ) ) {
			return null;
		}
		return array(
			'host' => $proxy->host(),
			'port' => (int) $proxy->port(),
			'auth' => $proxy->use_authentication() ? $proxy->authentication() : '',
		);
	}
}
