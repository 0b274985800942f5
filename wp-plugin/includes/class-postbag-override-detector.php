<?php
/**
 * Notices a wp_mail() replaced by another plugin.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Postbag sees mail through `pre_wp_mail`, which only core's wp_mail() (or a
 * replacement that copies it) applies. A plugin that replaced wp_mail()
 * without it makes every non-priority mail bypass Postbag: find the file
 * that defined wp_mail() and say so, in a notice and in Site Health.
 */
final class Postbag_Override_Detector {

	/** @var string */
	private $function;

	/** @var string */
	private $core_file;

	/**
	 * @param string      $function  Function to inspect (tests pass their own).
	 * @param string|null $core_file The file core defines it in.
	 */
	public function __construct( string $function = 'wp_mail', ?string $core_file = null ) {
		$this->function  = $function;
		$this->core_file = $core_file ?? ABSPATH . WPINC . '/pluggable.php';
	}

	public function init(): void {
		add_filter( 'site_status_tests', array( $this, 'add_site_health_test' ) );
	}

	public function remove(): void {
		remove_filter( 'site_status_tests', array( $this, 'add_site_health_test' ) );
	}

	/** How many calls deep a replacement is followed looking for `pre_wp_mail`. */
	const MAX_DEPTH = 3;

	/**
	 * The file of a replacement that never applies `pre_wp_mail`, or null when
	 * mail reaches Postbag (core's function, or a replacement that applies the
	 * filter itself or in a function it calls: FluentSMTP's wp_mail() returns
	 * fluentMailSend(...), which applies it).
	 */
	public function overriding_file(): ?string {
		if ( ! function_exists( $this->function ) ) {
			return null; // Pluggable functions are not loaded yet; nothing to judge.
		}
		$function = new ReflectionFunction( $this->function );
		$file     = (string) $function->getFileName();
		if ( realpath( $file ) === realpath( $this->core_file ) ) {
			return null;
		}
		$seen = array();
		return self::applies_filter( $function, self::MAX_DEPTH, $seen ) ? null : $file;
	}

	/**
	 * Whether a function's source mentions `pre_wp_mail`, or a user-defined
	 * function it calls does (at most `$depth` calls down; each function read once).
	 *
	 * @param ReflectionFunction   $function Function to read.
	 * @param int                  $depth    Calls still to follow.
	 * @param array<string, true>  $seen     Functions already read (lower-case names).
	 */
	private static function applies_filter( ReflectionFunction $function, int $depth, array &$seen ): bool {
		$seen[ strtolower( $function->getName() ) ] = true;
		$body = self::source( $function );
		if ( false !== strpos( $body, 'pre_wp_mail' ) ) {
			return true;
		}
		if ( $depth <= 1 ) {
			return false;
		}
		foreach ( self::called_functions( $body ) as $name ) {
			if ( isset( $seen[ $name ] ) || ! function_exists( $name ) ) {
				continue;
			}
			$callee = new ReflectionFunction( $name );
			if ( $callee->isUserDefined() && self::applies_filter( $callee, $depth - 1, $seen ) ) {
				return true;
			}
		}
		return false;
	}

	/**
	 * @param ReflectionFunction $function A user-defined function.
	 * @return string Its source, '' for eval()'d code.
	 */
	private static function source( ReflectionFunction $function ): string {
		$file  = (string) $function->getFileName();
		$lines = is_file( $file ) ? file( $file ) : false;
		return false === $lines ? '' : implode( '', array_slice( $lines, $function->getStartLine() - 1, $function->getEndLine() - $function->getStartLine() + 1 ) );
	}

	/**
	 * Names of the plain functions a piece of source calls (`name(`, not
	 * methods, not `new`), lower-case, without a leading namespace separator.
	 *
	 * @param string $body PHP source of one function.
	 * @return string[]
	 */
	private static function called_functions( string $body ): array {
		$tokens = array_values(
			array_filter(
				token_get_all( '<?php ' . $body ),
				static function ( $token ): bool {
					return ! is_array( $token ) || ! in_array( $token[0], array( T_WHITESPACE, T_COMMENT, T_DOC_COMMENT ), true );
				}
			)
		);
		$names = array();
		foreach ( $tokens as $i => $token ) {
			$previous = $tokens[ $i - 1 ] ?? null;
			$is_name  = is_array( $token ) && in_array( $token[0], array( T_STRING, T_NAME_FULLY_QUALIFIED, T_NAME_QUALIFIED ), true );
			$is_call  = '(' === ( $tokens[ $i + 1 ] ?? null );
			$member   = is_array( $previous ) && in_array( $previous[0], array( T_OBJECT_OPERATOR, T_NULLSAFE_OBJECT_OPERATOR, T_DOUBLE_COLON, T_NEW, T_FUNCTION ), true );
			if ( $is_name && $is_call && ! $member ) {
				$names[] = strtolower( ltrim( $token[1], '\\' ) );
			}
		}
		return array_unique( $names );
	}

	/**
	 * @param array $tests Site Health tests.
	 * @return array
	 */
	public function add_site_health_test( $tests ) {
		$tests['direct']['postbag_wp_mail'] = array(
			'label' => __( 'Postbag can see outgoing mail', 'postbag' ),
			'test'  => array( $this, 'site_health_result' ),
		);
		return $tests;
	}

	/** The Site Health test result. */
	public function site_health_result(): array {
		$file   = $this->overriding_file();
		$result = array(
			'label'       => __( 'Postbag can see outgoing mail', 'postbag' ),
			'status'      => 'good',
			'badge'       => array(
				'label' => __( 'Postbag', 'postbag' ),
				'color' => 'blue',
			),
			'description' => '<p>' . esc_html__( 'wp_mail() applies the pre_wp_mail filter, so non-priority mail is queued for Amazon SES.', 'postbag' ) . '</p>',
			'actions'     => '',
			'test'        => 'postbag_wp_mail',
		);
		if ( null !== $file ) {
			$result['status']         = 'critical';
			$result['badge']['color'] = 'red';
			$result['label']          = __( 'Another plugin replaced wp_mail(); Postbag cannot see mail', 'postbag' );
			$result['description']    = '<p>' . esc_html( self::message( $file ) ) . '</p>';
		}
		return $result;
	}

	/**
	 * @param string $file The file that defined wp_mail().
	 */
	public static function message( string $file ): string {
		/* translators: %s: path of a PHP file */
		return sprintf( __( 'wp_mail() is defined in %s, which never applies the pre_wp_mail filter: non-priority mail is sent at once, marker address included, instead of through Postbag. Deactivate the plugin that defines it, or let it send only urgent mail.', 'postbag' ), $file );
	}
}
