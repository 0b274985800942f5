<?php
/**
 * A private temporary directory for one test run, removed at the end.
 *
 * @package Postbag\Tests
 */

/**
 * Everything the harness writes (database files, wp-content, spool, logs)
 * lives below one mktemp-style directory.
 */
final class Postbag_Test_Sandbox {

	/** @var string Absolute path, no trailing slash. */
	public $dir;

	public function __construct() {
		$base = rtrim( sys_get_temp_dir(), '/' );
		// Short names: MariaDB's socket path must stay under 108 bytes.
		for ( $attempt = 0; $attempt < 10; $attempt++ ) {
			$dir = $base . '/postbag-' . bin2hex( random_bytes( 4 ) );
			if ( @mkdir( $dir, 0700 ) ) { // phpcs:ignore WordPress.PHP.NoSilencedErrors -- a clash just means another name.
				$this->dir = $dir;
				return;
			}
		}
		throw new RuntimeException( "Could not create a temporary directory under $base" );
	}

	/**
	 * A path inside the sandbox; creates the directory when asked to.
	 */
	public function path( string $name, bool $make_dir = false ): string {
		$path = $this->dir . '/' . $name;
		if ( $make_dir && ! is_dir( $path ) && ! mkdir( $path, 0700, true ) ) {
			throw new RuntimeException( "Could not create $path" );
		}
		return $path;
	}

	/**
	 * Deletes the sandbox. Symbolic links (the plugin is linked in) are
	 * removed, never followed.
	 */
	public function remove(): void {
		if ( null === $this->dir || ! is_dir( $this->dir ) ) {
			return;
		}
		self::remove_tree( $this->dir );
		$this->dir = null;
	}

	/**
	 * Deletes a directory tree without following symbolic links.
	 */
	public static function remove_tree( string $dir ): void {
		$entries = new RecursiveIteratorIterator(
			new RecursiveDirectoryIterator( $dir, FilesystemIterator::SKIP_DOTS ),
			RecursiveIteratorIterator::CHILD_FIRST
		);
		foreach ( $entries as $entry ) {
			if ( $entry->isLink() || ! $entry->isDir() ) {
				unlink( $entry->getPathname() );
			} else {
				rmdir( $entry->getPathname() );
			}
		}
		rmdir( $dir );
	}
}
