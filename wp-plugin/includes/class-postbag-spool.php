<?php
/**
 * Local storage for batches that could not be uploaded.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * A directory of batches waiting for S3: per batch `<id>.batch` (key, body,
 * attachment bodies; written once) and `<id>.state` (attempts, times, last
 * error; small, rewritten on every retry). Files are written atomically
 * (temporary file, then rename), so a crash never leaves half a batch, and
 * survive restarts. The directory is kept away from the web server: outside
 * the web root by default, and always with deny rules and an index file.
 */
final class Postbag_Spool {

	/** Files that keep web servers from serving or listing the directory. */
	const PROTECTION = array(
		'.htaccess'  => "# Postbag spool: never served.\n<IfModule mod_authz_core.c>\n\tRequire all denied\n</IfModule>\n<IfModule !mod_authz_core.c>\n\tOrder deny,allow\n\tDeny from all\n</IfModule>\n",
		'index.php'  => "<?php\n// Silence is golden.\n",
		'web.config' => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n\t<system.webServer>\n\t\t<authorization>\n\t\t\t<deny users=\"*\" />\n\t\t</authorization>\n\t</system.webServer>\n</configuration>\n",
	);

	/** @var string POSTBAG_SPOOL_DIR, or '' for the default. */
	private $configured;

	/** @var string|null The directory, resolved on first use (it may need wp_upload_dir()). */
	private $dir;

	/** @var resource|null Handle holding the retry lock. */
	private $lock;

	/**
	 * @param string $dir Spool directory (created on first write); '' for default_dir().
	 */
	public function __construct( string $dir = '' ) {
		$this->configured = $dir;
	}

	/**
	 * POSTBAG_SPOOL_DIR when set; else a directory next to the WordPress
	 * directory (outside the web root in the usual layout) when it can be
	 * written; else wp-content/uploads/postbag-spool.
	 *
	 * @param string $configured POSTBAG_SPOOL_DIR, or ''.
	 */
	public static function default_dir( string $configured = '' ): string {
		if ( '' !== $configured ) {
			return $configured;
		}
		// Named per site, so installs sharing a parent directory never share a spool.
		$outside = dirname( untrailingslashit( ABSPATH ) ) . '/postbag-spool-' . substr( md5( ABSPATH . DB_NAME . $GLOBALS['wpdb']->base_prefix ), 0, 12 );
		if ( is_dir( $outside ) ? wp_is_writable( $outside ) : wp_is_writable( dirname( $outside ) ) ) {
			return $outside;
		}
		return wp_upload_dir( null, false )['basedir'] . '/postbag-spool';
	}

	public function dir(): string {
		if ( null === $this->dir ) {
			$this->dir = untrailingslashit( self::default_dir( $this->configured ) );
		}
		return $this->dir;
	}

	/**
	 * Stores a batch with its first state.
	 *
	 * @param Postbag_Batch $batch Batch to keep.
	 * @param array         $state See save_state().
	 * @throws Postbag_Spool_Exception When the directory cannot be written.
	 */
	public function write( Postbag_Batch $batch, array $state ): void {
		$this->prepare();
		$this->put(
			$batch->id . '.batch',
			Postbag_Batch::encode(
				array(
					'key'         => $batch->key,
					'body'        => $batch->body,
					'mail_ids'    => $batch->mail_ids,
					'attachments' => array_map( 'base64_encode', $batch->attachments ),
				)
			)
		);
		$this->save_state( $batch->id, $state );
	}

	/**
	 * @param string $id    Batch id.
	 * @param array  $state `attempts`, `first_spooled_at`, `next_attempt_at`, `last_error`, `mails`.
	 * @throws Postbag_Spool_Exception When the file cannot be written.
	 */
	public function save_state( string $id, array $state ): void {
		$this->put( $id . '.state', Postbag_Batch::encode( $state ) );
	}

	/**
	 * @param string $id Batch id.
	 * @throws Postbag_Spool_Exception When the batch is missing or damaged.
	 */
	public function load( string $id ): Postbag_Batch {
		$stored = json_decode( $this->get( $id . '.batch' ), true );
		if ( ! is_array( $stored ) || ! isset( $stored['key'], $stored['body'], $stored['mail_ids'] ) ) {
			throw new Postbag_Spool_Exception( sprintf( 'Spooled batch %s is damaged.', $id ) );
		}
		return new Postbag_Batch( $id, $stored['key'], $stored['body'], $stored['mail_ids'], array_map( 'base64_decode', $stored['attachments'] ?? array() ) );
	}

	/**
	 * Every spooled batch's state, oldest first.
	 *
	 * @return array<string, array> Batch id => state.
	 */
	public function states(): array {
		$states = array();
		foreach ( glob( $this->dir() . '/*.state' ) ?: array() as $file ) {
			$state = json_decode( (string) file_get_contents( $file ), true );
			if ( is_array( $state ) ) {
				$states[ basename( $file, '.state' ) ] = $state;
			}
		}
		uasort(
			$states,
			static function ( array $a, array $b ): int {
				return ( $a['first_spooled_at'] ?? 0 ) <=> ( $b['first_spooled_at'] ?? 0 );
			}
		);
		return $states;
	}

	/**
	 * @param string $id Batch id.
	 */
	public function remove( string $id ): void {
		foreach ( array( '.batch', '.state' ) as $suffix ) {
			if ( is_file( $this->dir() . '/' . $id . $suffix ) ) {
				unlink( $this->dir() . '/' . $id . $suffix );
			}
		}
	}

	/**
	 * Takes the retry lock, so two cron runs never upload the same batch at once.
	 *
	 * @return bool False when another process holds it.
	 */
	public function lock(): bool {
		if ( ! is_dir( $this->dir() ) ) {
			return true; // Nothing spooled, nothing to guard.
		}
		$handle = fopen( $this->dir() . '/.lock', 'c' );
		if ( false === $handle || ! flock( $handle, LOCK_EX | LOCK_NB ) ) {
			if ( false !== $handle ) {
				fclose( $handle );
			}
			return false;
		}
		$this->lock = $handle;
		return true;
	}

	public function unlock(): void {
		if ( null !== $this->lock ) {
			flock( $this->lock, LOCK_UN );
			fclose( $this->lock );
			$this->lock = null;
		}
	}

	/** Removes every spooled batch and the directory itself (uninstall). */
	public function destroy(): void {
		foreach ( glob( $this->dir() . '/{,.}*', GLOB_BRACE ) ?: array() as $file ) {
			if ( is_file( $file ) ) {
				unlink( $file );
			}
		}
		if ( is_dir( $this->dir() ) ) {
			rmdir( $this->dir() );
		}
	}

	/**
	 * Creates the directory (owner-only) and its protection files.
	 *
	 * @throws Postbag_Spool_Exception When it cannot.
	 */
	private function prepare(): void {
		if ( ! is_dir( $this->dir() ) ) {
			if ( ! wp_mkdir_p( $this->dir() ) ) {
				throw new Postbag_Spool_Exception( sprintf( 'Cannot create the spool directory %s.', $this->dir() ) );
			}
			chmod( $this->dir(), 0700 );
		}
		foreach ( self::PROTECTION as $name => $contents ) {
			if ( ! is_file( $this->dir() . '/' . $name ) ) {
				$this->put( $name, $contents );
			}
		}
	}

	/**
	 * Writes a file atomically.
	 *
	 * @param string $name     File name in the spool.
	 * @param string $contents Contents.
	 * @throws Postbag_Spool_Exception When it cannot.
	 */
	private function put( string $name, string $contents ): void {
		$temp = $this->dir() . '/.' . $name . '.' . bin2hex( random_bytes( 6 ) ) . '.tmp';
		if ( strlen( $contents ) !== @file_put_contents( $temp, $contents ) || ! chmod( $temp, 0600 ) || ! rename( $temp, $this->dir() . '/' . $name ) ) { // phpcs:ignore WordPress.PHP.NoSilencedErrors -- the exception carries the failure.
			if ( is_file( $temp ) ) {
				unlink( $temp );
			}
			throw new Postbag_Spool_Exception( sprintf( 'Cannot write %s in the spool directory %s.', $name, $this->dir() ) );
		}
	}

	/**
	 * @param string $name File name in the spool.
	 * @throws Postbag_Spool_Exception When it cannot be read.
	 */
	private function get( string $name ): string {
		$contents = is_file( $this->dir() . '/' . $name ) ? file_get_contents( $this->dir() . '/' . $name ) : false;
		if ( false === $contents ) {
			throw new Postbag_Spool_Exception( sprintf( 'Cannot read %s in the spool directory %s.', $name, $this->dir() ) );
		}
		return $contents;
	}
}
