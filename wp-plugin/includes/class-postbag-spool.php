<?php
/**
 * Local storage for batches on their way to S3.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * A directory of batches waiting for S3. Every batch is written here before
 * the response ends and removed once it is in the bucket, so a worker that
 * dies loses nothing; one that could not upload leaves it for the retry.
 *
 * Per batch `<id>.batch.php`: a JSON header line (key, mail ids, sizes, the
 * batch's first state) then the batch file and its attachments, raw; and,
 * once an upload failed, `<id>.state.php` (attempts, times, last error; small,
 * rewritten on every retry). Files are written atomically (temporary file,
 * then rename), so a crash never leaves half a batch, and survive restarts.
 *
 * Why the files are PHP: the spool must never be readable over HTTP, on any
 * server. The directory is outside the web root when one can be found and
 * written, but often the only writable place is wp-content/uploads/, which
 * nginx serves whole (.htaccess and web.config protect nothing there), and a
 * WordPress in a subdirectory puts even "next to WordPress" inside the web
 * root. A file ending in .php is never served as it is by a server that runs
 * WordPress: it is handed to PHP, which meets `exit` before any output, and
 * __halt_compiler() keeps PHP from even parsing the mail after it (which may
 * hold "<?php" of its own). A server configured to deny PHP under uploads/
 * answers 403, which is as good. The names hold the batch's random UUID, and
 * index.php, .htaccess and web.config stay as a second line for listings.
 * Encrypting the files instead would tie them to a key that a salt rotation
 * or a migration loses, and with it the mail.
 */
final class Postbag_Spool {

	/** The first bytes of every batch and state file: PHP stops here when a web server runs it. */
	const GUARD = "<?php exit; __halt_compiler();\n";

	const BATCH_SUFFIX = '.batch.php';

	const STATE_SUFFIX = '.state.php';

	/** Files of earlier versions: JSON, no guard. Rewritten with it by upgrade(). */
	const LEGACY_BATCH_SUFFIX = '.batch';

	const LEGACY_STATE_SUFFIX = '.state';

	/** Files that keep web servers from serving or listing the directory. */
	const PROTECTION = array(
		'.htaccess'  => "# Postbag spool: never served.\n<IfModule mod_authz_core.c>\n\tRequire all denied\n</IfModule>\n<IfModule !mod_authz_core.c>\n\tOrder deny,allow\n\tDeny from all\n</IfModule>\n",
		'index.php'  => "<?php\n// Silence is golden.\n",
		'web.config' => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n\t<system.webServer>\n\t\t<authorization>\n\t\t\t<deny users=\"*\" />\n\t\t</authorization>\n\t</system.webServer>\n</configuration>\n",
	);

	/** Temporary files older than this are left over from a crash mid-write. */
	const STALE_TEMP_SECONDS = 3600;

	/** @var string POSTBAG_SPOOL_DIR, or '' for the default. */
	private $configured;

	/** @var string|null The directory, resolved on first use (it may need wp_upload_dir()). */
	private $dir;

	/** @var resource|null Handle holding the retry lock. */
	private $lock;

	/** @var bool prepare() found everything in place (a flush writes many batches). */
	private $prepared = false;

	/**
	 * @param string $dir Spool directory (created on first write); '' for default_dir().
	 */
	public function __construct( string $dir = '' ) {
		$this->configured = $dir;
	}

	/**
	 * POSTBAG_SPOOL_DIR when set; else a directory next to the WordPress
	 * directory (outside the web root in the usual layout) when it can be
	 * written; else wp-content/uploads/postbag-spool. The files are safe in
	 * any of them (see the class comment).
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
	 * Stores a batch with its state, in one file; a state file written
	 * earlier for the same id gives way to it.
	 *
	 * @param Postbag_Batch $batch Batch to keep.
	 * @param array         $state See save_state().
	 * @throws Postbag_Spool_Exception When the directory cannot be written.
	 */
	public function write( Postbag_Batch $batch, array $state ): void {
		$this->prepare();
		$header = Postbag_Batch::encode(
			array(
				'key'         => $batch->key,
				'mail_ids'    => $batch->mail_ids,
				'body_bytes'  => strlen( $batch->body ),
				'attachments' => array_map( 'strlen', $batch->attachments ),
				'state'       => $state,
			)
		);
		$this->put( $batch->id . self::BATCH_SUFFIX, array_merge( array( self::GUARD, $header . "\n", $batch->body ), array_values( $batch->attachments ) ) );
		$this->delete( $batch->id . self::STATE_SUFFIX );
	}

	/**
	 * @param string $id    Batch id.
	 * @param array  $state `attempts`, `first_spooled_at`, `next_attempt_at`, `last_error`, `mails`.
	 * @throws Postbag_Spool_Exception When the file cannot be written.
	 */
	public function save_state( string $id, array $state ): void {
		$this->put( $id . self::STATE_SUFFIX, array( self::GUARD, Postbag_Batch::encode( $state ) ) );
	}

	/**
	 * A spooled batch's state: its state file, or the state it was written with.
	 *
	 * @param string $id Batch id.
	 * @return array|null Null when the batch is gone.
	 */
	public function state( string $id ): ?array {
		return $this->saved_state( $id ) ?? $this->first_state( $id );
	}

	/** Whether a batch is (still) in the spool. */
	public function has( string $id ): bool {
		return is_file( $this->path( $id . self::BATCH_SUFFIX ) );
	}

	/** Bytes a spooled batch takes on disk, 0 when it is gone. */
	public function size( string $id ): int {
		return (int) @filesize( $this->path( $id . self::BATCH_SUFFIX ) ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- gone is 0.
	}

	/**
	 * @param string $id Batch id.
	 * @throws Postbag_Spool_Exception When the batch is missing or damaged.
	 */
	public function load( string $id ): Postbag_Batch {
		$handle = $this->open( $id . self::BATCH_SUFFIX );
		try {
			$header = self::header( $handle );
			if ( null === $header || ! isset( $header['key'], $header['mail_ids'], $header['body_bytes'] ) ) {
				throw new Postbag_Spool_Exception( sprintf( 'Spooled batch %s is damaged.', $id ) );
			}
			$body        = self::read_exactly( $handle, (int) $header['body_bytes'], $id );
			$attachments = array();
			foreach ( (array) ( $header['attachments'] ?? array() ) as $key => $bytes ) {
				$attachments[ (string) $key ] = self::read_exactly( $handle, (int) $bytes, $id );
			}
		} finally {
			fclose( $handle );
		}
		return new Postbag_Batch( $id, $header['key'], $body, $header['mail_ids'], $attachments );
	}

	/**
	 * Every spooled batch's state, oldest first: its state file, or the state
	 * it was written with.
	 *
	 * @return array<string, array> Batch id => state.
	 */
	public function states(): array {
		$states = array();
		foreach ( glob( $this->dir() . '/*' . self::BATCH_SUFFIX ) ?: array() as $file ) {
			$id    = basename( $file, self::BATCH_SUFFIX );
			$state = $this->state( $id );
			if ( null !== $state ) {
				$states[ $id ] = $state;
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
		// The batch first: a state without its batch is ignored, a batch without its state is not.
		foreach ( array( self::BATCH_SUFFIX, self::STATE_SUFFIX, self::LEGACY_BATCH_SUFFIX, self::LEGACY_STATE_SUFFIX ) as $suffix ) {
			$this->delete( $id . $suffix );
		}
	}

	/**
	 * Writes a guarded file of another kind (a notify job's record, progress
	 * or part) atomically, like a batch.
	 *
	 * @param string   $name  File name, ending in .php.
	 * @param string[] $parts Its contents after the guard, in order.
	 * @throws Postbag_Spool_Exception When the directory cannot be written.
	 */
	public function write_file( string $name, array $parts ): void {
		$this->prepare();
		$this->put( $name, array_merge( array( self::GUARD ), $parts ) );
	}

	/**
	 * @param string $name File name written by write_file() or moved in by adopt().
	 * @return string|null Its contents after the guard; null when it is gone or unguarded.
	 */
	public function read_file( string $name ): ?string {
		$contents = @file_get_contents( $this->path( $name ) ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- gone is null.
		if ( false === $contents || 0 !== strpos( $contents, self::GUARD ) ) {
			return null;
		}
		return substr( $contents, strlen( self::GUARD ) );
	}

	/**
	 * A temporary file in the spool, guarded and owner-only, for content too
	 * large to hold in memory; adopt() gives it its name.
	 *
	 * @return array{0: string, 1: resource} Its path and a handle positioned after the guard.
	 * @throws Postbag_Spool_Exception When it cannot be made.
	 */
	public function temp_file(): array {
		$this->prepare();
		$temp   = $this->path( '.' . bin2hex( random_bytes( 8 ) ) . '.tmp.php' );
		$handle = @fopen( $temp, 'xb' ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- the exception carries the failure.
		if ( false === $handle || ! chmod( $temp, 0600 ) || strlen( self::GUARD ) !== fwrite( $handle, self::GUARD ) ) {
			if ( false !== $handle ) {
				fclose( $handle );
				unlink( $temp );
			}
			throw new Postbag_Spool_Exception( sprintf( 'Cannot write in the spool directory %s.', $this->dir() ) );
		}
		return array( $temp, $handle );
	}

	/**
	 * Renames a finished temp_file() (closed) to `$name`, atomically.
	 *
	 * @param string $temp Its path.
	 * @param string $name File name in the spool.
	 * @throws Postbag_Spool_Exception When it cannot.
	 */
	public function adopt( string $temp, string $name ): void {
		if ( ! rename( $temp, $this->path( $name ) ) ) {
			@unlink( $temp ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- best effort; upgrade() removes it later.
			throw new Postbag_Spool_Exception( sprintf( 'Cannot write %s in the spool directory %s.', $name, $this->dir() ) );
		}
	}

	/**
	 * @param string $name File name in the spool; gone already is fine.
	 */
	public function delete_file( string $name ): void {
		$this->delete( $name );
	}

	/**
	 * Names of the spool's files matching a glob pattern, sorted.
	 *
	 * @param string $pattern E.g. `*.job.php`.
	 * @return string[]
	 */
	public function names( string $pattern ): array {
		return array_map( 'basename', glob( $this->dir() . '/' . $pattern ) ?: array() );
	}

	/**
	 * Takes an exclusive lock named `$name` without waiting; the operating
	 * system releases it when the process ends, however it ends.
	 *
	 * @param string $name Lock file name in the spool.
	 * @return resource|null The handle holding it (keep it open), or null when another process holds it.
	 */
	public function try_lock( string $name ) {
		$this->prepare();
		$handle = @fopen( $this->path( $name ), 'c' ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- null says it.
		if ( false === $handle ) {
			return null;
		}
		if ( ! flock( $handle, LOCK_EX | LOCK_NB ) ) {
			fclose( $handle );
			return null;
		}
		return $handle;
	}

	/**
	 * Rewrites the unguarded files of earlier versions in the guarded format
	 * and removes temporary files a crash left behind. Run on activation, by
	 * each retry run and by Site Health.
	 *
	 * @return string[] Files that could not be rewritten (damaged, or the directory is read-only).
	 */
	public function upgrade(): array {
		$left = array();
		foreach ( glob( $this->dir() . '/*' . self::LEGACY_BATCH_SUFFIX ) ?: array() as $file ) {
			$id     = basename( $file, self::LEGACY_BATCH_SUFFIX );
			$stored = json_decode( (string) file_get_contents( $file ), true );
			$state  = json_decode( (string) @file_get_contents( $this->path( $id . self::LEGACY_STATE_SUFFIX ) ), true ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- a batch may have no state.
			try {
				if ( ! is_array( $stored ) || ! isset( $stored['key'], $stored['body'], $stored['mail_ids'] ) ) {
					throw new Postbag_Spool_Exception( 'damaged' );
				}
				$batch = new Postbag_Batch( $id, $stored['key'], $stored['body'], $stored['mail_ids'], array_map( 'base64_decode', $stored['attachments'] ?? array() ) );
				$this->write( $batch, is_array( $state ) ? $state : $this->default_state( $file, count( $batch->mail_ids ) ) );
				$this->delete( $id . self::LEGACY_BATCH_SUFFIX );
				$this->delete( $id . self::LEGACY_STATE_SUFFIX );
			} catch ( Postbag_Spool_Exception $e ) {
				$left[] = $file; // Never renamed to .php: its contents were not written to be run.
			}
		}
		foreach ( glob( $this->dir() . '/.*.tmp.php' ) ?: array() as $file ) {
			if ( filemtime( $file ) < time() - self::STALE_TEMP_SECONDS ) {
				@unlink( $file ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- another process may have removed it.
			}
		}
		return $left;
	}

	/**
	 * What keeps the spool from doing its job, for Site Health: empty when all is well.
	 *
	 * @return string[]
	 */
	public function problems(): array {
		$problems = array();
		try {
			$this->prepare();
		} catch ( Postbag_Spool_Exception $e ) {
			$problems[] = $e->getMessage();
			return $problems;
		}
		if ( ! wp_is_writable( $this->dir() ) ) {
			/* translators: %s: directory */
			$problems[] = sprintf( __( 'The spool directory %s cannot be written.', 'postbag' ), $this->dir() );
		}
		foreach ( $this->upgrade() as $file ) {
			/* translators: %s: file */
			$problems[] = sprintf( __( '%s was written by an earlier version without protection and cannot be converted: look at it, then delete it.', 'postbag' ), $file );
		}
		return $problems;
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
		$this->prepared = false;
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
	public function prepare(): void {
		if ( $this->prepared ) {
			return;
		}
		if ( ! is_dir( $this->dir() ) ) {
			if ( ! wp_mkdir_p( $this->dir() ) ) {
				throw new Postbag_Spool_Exception( sprintf( 'Cannot create the spool directory %s.', $this->dir() ) );
			}
			chmod( $this->dir(), 0700 );
		}
		foreach ( self::PROTECTION as $name => $contents ) {
			if ( ! is_file( $this->path( $name ) ) ) {
				$this->put( $name, array( $contents ) );
			}
		}
		$this->prepared = true;
	}

	/**
	 * @param string $id Batch id.
	 * @return array|null Its state file's contents, if it has one.
	 */
	private function saved_state( string $id ): ?array {
		$contents = @file_get_contents( $this->path( $id . self::STATE_SUFFIX ) ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- most batches have none.
		if ( false === $contents || 0 !== strpos( $contents, self::GUARD ) ) {
			return null;
		}
		$state = json_decode( substr( $contents, strlen( self::GUARD ) ), true );
		return is_array( $state ) ? $state : null;
	}

	/**
	 * @param string $id Batch id.
	 * @return array|null The state in the batch's header; a default one for a damaged header (so a
	 *                    retry reports it); null when the batch is gone.
	 */
	private function first_state( string $id ): ?array {
		$file   = $this->path( $id . self::BATCH_SUFFIX );
		$handle = @fopen( $file, 'rb' ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- removed meanwhile.
		if ( false === $handle ) {
			return null;
		}
		$header = self::header( $handle );
		fclose( $handle );
		return is_array( $header['state'] ?? null ) ? $header['state'] : $this->default_state( $file, count( $header['mail_ids'] ?? array() ) );
	}

	/**
	 * A state for a batch that lost its own: due at once.
	 *
	 * @param string $file  The batch's file.
	 * @param int    $mails Mails in it.
	 */
	private function default_state( string $file, int $mails ): array {
		$time = (int) @filemtime( $file ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- 0 is fine.
		return array(
			'attempts'         => 0,
			'first_spooled_at' => $time,
			'next_attempt_at'  => $time,
			'last_error'       => '',
			'mails'            => $mails,
		);
	}

	/**
	 * @param resource $handle A batch file, at its start.
	 * @return array|null Its header, or null when the file is not a guarded batch.
	 */
	private static function header( $handle ): ?array {
		if ( self::GUARD !== fread( $handle, strlen( self::GUARD ) ) ) {
			return null;
		}
		$header = json_decode( (string) fgets( $handle ), true );
		return is_array( $header ) ? $header : null;
	}

	/**
	 * @param resource $handle Open file.
	 * @param int      $bytes  How many.
	 * @param string   $id     Batch id, for the message.
	 * @throws Postbag_Spool_Exception When the file ends first.
	 */
	private static function read_exactly( $handle, int $bytes, string $id ): string {
		$data = '';
		while ( strlen( $data ) < $bytes ) {
			$chunk = fread( $handle, $bytes - strlen( $data ) );
			if ( false === $chunk || '' === $chunk ) {
				throw new Postbag_Spool_Exception( sprintf( 'Spooled batch %s is damaged.', $id ) );
			}
			$data .= $chunk;
		}
		return $data;
	}

	/**
	 * @param string $name File name in the spool.
	 * @return resource
	 * @throws Postbag_Spool_Exception When it cannot be opened.
	 */
	private function open( string $name ) {
		$handle = is_file( $this->path( $name ) ) ? fopen( $this->path( $name ), 'rb' ) : false;
		if ( false === $handle ) {
			throw new Postbag_Spool_Exception( sprintf( 'Cannot read %s in the spool directory %s.', $name, $this->dir() ) );
		}
		return $handle;
	}

	/**
	 * Writes a file atomically, in parts (no copy of a large batch is made to
	 * join them). The temporary file ends in .php and starts with the guard
	 * too, so it is no more readable than the file it becomes.
	 *
	 * @param string   $name  File name in the spool.
	 * @param string[] $parts Its contents, in order.
	 * @throws Postbag_Spool_Exception When it cannot.
	 */
	private function put( string $name, array $parts ): void {
		$temp   = $this->path( '.' . bin2hex( random_bytes( 8 ) ) . '.tmp.php' );
		$handle = @fopen( $temp, 'xb' ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- the exception carries the failure.
		$ok     = false !== $handle && chmod( $temp, 0600 );
		foreach ( $parts as $part ) {
			$ok = $ok && strlen( $part ) === fwrite( $handle, $part );
		}
		if ( false !== $handle ) {
			$ok = fclose( $handle ) && $ok;
		}
		if ( ! $ok || ! rename( $temp, $this->path( $name ) ) ) {
			if ( is_file( $temp ) ) {
				unlink( $temp );
			}
			throw new Postbag_Spool_Exception( sprintf( 'Cannot write %s in the spool directory %s.', $name, $this->dir() ) );
		}
	}

	/**
	 * @param string $name File name in the spool; gone already is fine.
	 */
	private function delete( string $name ): void {
		if ( is_file( $this->path( $name ) ) ) {
			@unlink( $this->path( $name ) ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- another process may have removed it.
		}
	}

	/**
	 * @param string $name File name in the spool.
	 */
	private function path( string $name ): string {
		return $this->dir() . '/' . $name;
	}
}
