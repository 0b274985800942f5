<?php
/**
 * Runs the project's Python (the venv `make test` creates) from PHP tests.
 *
 * @package Postbag\Tests
 */

/**
 * Small Python helpers print one JSON document; this runs them and decodes it.
 */
final class Postbag_Test_Python {

	/**
	 * The venv's interpreter; POSTBAG_PYTHON overrides it.
	 */
	public static function binary(): string {
		$python = getenv( 'POSTBAG_PYTHON' );
		return $python ? $python : self::repo_root() . '/.venv/bin/python';
	}

	public static function repo_root(): string {
		return dirname( __DIR__, 3 );
	}

	/**
	 * Our environment with the repository's packages importable
	 * (`postbag`, and `chalicelib` the way pytest sees it), and no AWS
	 * profile or endpoint of the developer's that could lead a client astray.
	 *
	 * @param array<string, string> $extra Variables to set.
	 * @return array<string, string>
	 */
	public static function environment( array $extra = array() ): array {
		$root              = self::repo_root();
		$env               = getenv();
		$env['PYTHONPATH'] = $root . '/chalice_app:' . $root;
		unset( $env['AWS_PROFILE'], $env['AWS_ENDPOINT_URL'] );
		return array_merge( $env, $extra );
	}

	/**
	 * @param string[]              $args  Script and arguments.
	 * @param array<string, string> $env   Variables to set.
	 * @param string                $stdin Fed to the script.
	 * @return mixed The JSON the script printed, decoded.
	 */
	public static function run( array $args, array $env = array(), string $stdin = '' ) {
		$errors  = tmpfile();
		$process = proc_open(
			array_merge( array( self::binary() ), $args ),
			array(
				0 => array( 'pipe', 'r' ),
				1 => array( 'pipe', 'w' ),
				2 => $errors,
			),
			$pipes,
			null,
			self::environment( $env )
		);
		if ( ! is_resource( $process ) ) {
			throw new RuntimeException( 'Could not start ' . self::binary() );
		}
		fwrite( $pipes[0], $stdin );
		fclose( $pipes[0] );
		$out = stream_get_contents( $pipes[1] );
		fclose( $pipes[1] );
		$status = proc_close( $process );
		rewind( $errors );
		$err = stream_get_contents( $errors );
		fclose( $errors );
		if ( 0 !== $status ) {
			throw new RuntimeException( 'python ' . implode( ' ', $args ) . " failed ($status): $err$out" );
		}
		return json_decode( $out, true, 512, JSON_THROW_ON_ERROR );
	}
}
