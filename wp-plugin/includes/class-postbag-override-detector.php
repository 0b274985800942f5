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

	/**
	 * The file of a replacement that never applies `pre_wp_mail`, or null when
	 * mail reaches Postbag (core's function, or a replacement that applies the filter).
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
		$lines = is_file( $file ) ? file( $file ) : false; // Not a file for eval()'d code.
		$body  = false === $lines ? '' : implode( '', array_slice( $lines, $function->getStartLine() - 1, $function->getEndLine() - $function->getStartLine() + 1 ) );
		return false !== strpos( $body, 'pre_wp_mail' ) ? null : $file;
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
