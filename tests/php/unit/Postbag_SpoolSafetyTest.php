<?php
/**
 * Every batch on disk before its upload, in files no web server shows.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Flusher
 * @covers Postbag_Spool
 * @covers Postbag_Spool_Retry
 */
final class Postbag_SpoolSafetyTest extends Postbag_Unit_Test_Case {

	/**
	 * Replaces the plugin with one whose S3 client is `$client`.
	 */
	private function use_client( object $client, array $settings = array() ): void {
		$this->plugin->remove_hooks();
		$this->plugin = new Postbag_Plugin(
			new Postbag_Config( array_merge( array( 'bucket' => 'postbag-test' ), $settings ) ),
			$client,
			function (): int {
				return $this->now;
			},
			new Postbag_Spool( $this->spool_dir )
		);
		Postbag_Plugin::replace( $this->plugin );
	}

	/**
	 * A retry helper on the plugin's spool, as the flusher has one.
	 */
	private function retry(): Postbag_Spool_Retry {
		return new Postbag_Spool_Retry(
			$this->plugin->spool(),
			new Postbag_Batch_Uploader(
				function () {
					return $this->s3;
				}
			),
			new Postbag_Sync_Sender( $this->plugin->interceptor() ),
			function (): int {
				return $this->now;
			}
		);
	}

	/**
	 * Files in the spool besides the protection files and the lock.
	 *
	 * @return string[] Paths.
	 */
	private function spool_files(): array {
		$files = array();
		foreach ( glob( $this->spool_dir . '/{,.}*', GLOB_BRACE ) ?: array() as $file ) {
			if ( is_file( $file ) && ! isset( Postbag_Spool::PROTECTION[ basename( $file ) ] ) && '.lock' !== basename( $file ) ) {
				$files[] = $file;
			}
		}
		return $files;
	}

	public function test_every_batch_of_a_flush_is_on_disk_before_the_first_upload(): void {
		$seen   = array();
		$spool  = new Postbag_Spool( $this->spool_dir );
		$client = new class( $seen, $spool ) {
			/** @var array */
			private $seen;
			/** @var Postbag_Spool */
			private $spool;
			public function __construct( array &$seen, Postbag_Spool $spool ) {
				$this->seen  = &$seen;
				$this->spool = $spool;
			}
			public function put_objects( array $bodies ): array {
				$this->seen[] = count( $this->spool->states() );
				return array_map(
					static function (): Postbag_S3_Result {
						return new Postbag_S3_Result( true, 200 );
					},
					$bodies
				);
			}
		};
		$this->use_client( $client );
		for ( $n = 1; $n <= 60; $n++ ) {
			wp_mail( array( "u$n@example.net", self::MARKER ), "Mail $n", 'Body' );
		}

		$this->assertSame( array(), $this->plugin->flush() );

		$this->assertSame( 3, $seen[0], 'all three batches were spooled before any upload began' );
		$this->assertSame( array(), $this->plugin->spool()->states(), 'and each left the spool once uploaded' );
		$this->assertCount( 3, $this->fired['postbag_batch_uploaded'] );
	}

	public function test_a_flush_schedules_the_retry_before_uploading(): void {
		$this->s3->fail_pattern = '/./';
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$scheduled = array();
		add_filter(
			'pre_schedule_event',
			function ( $pre, $event ) use ( &$scheduled ) {
				if ( Postbag_Spool_Retry::HOOK === $event->hook ) {
					$scheduled[] = count( $this->s3->calls );
				}
				return $pre;
			},
			10,
			2
		);

		$this->plugin->flush();

		$this->assertSame( array( 0 ), $scheduled, 'once, before any upload: a worker killed during the upload still leaves a retry planned' );
	}

	public function test_spool_files_are_php_that_exits_before_any_output(): void {
		$this->use_settings( array( 'inline_attachment_max_bytes' => 4 ) );
		$this->s3->fail_pattern = '/./';
		$body = "Secret <?php echo 'PWNED'; ?> __halt_compiler(); ?><?= 'PWNED' ?>";
		wp_mail( array( 'a@example.net', self::MARKER ), 'Secret subject', $body, '', array( $this->temp_file( 'note.txt', '<?php echo "PWNED";' ) ) );
		$this->plugin->flush();
		$files = $this->spool_files();

		$this->assertCount( 2, $files, 'the batch and, after its failed upload, its state' );
		foreach ( $files as $file ) {
			$this->assertStringEndsWith( '.php', $file );
			$this->assertStringStartsWith( Postbag_Spool::GUARD, (string) file_get_contents( $file ) );
			$this->assertSame( 0600, fileperms( $file ) & 0777 );
			$output = shell_exec( escapeshellarg( PHP_BINARY ) . ' -d display_errors=1 -f ' . escapeshellarg( $file ) . ' 2>&1' );
			$this->assertSame( '', (string) $output, basename( $file ) . ' printed something when run' );
		}
	}

	public function test_a_batch_a_dead_worker_left_in_the_spool_is_uploaded_by_the_retry_as_the_same_batch(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'Left behind', 'Body' );
		$batch = $this->plugin->queue()->drain( $this->now )[0];
		$this->retry()->keep( $batch ); // What the flusher did before the worker died.

		$state = $this->plugin->spool()->states()[ $batch->id ];
		$this->assertSame( 0, $state['attempts'] );
		$this->assertSame( 1, $state['mails'] );
		$this->assertGreaterThanOrEqual( $this->now + 60, $state['next_attempt_at'] );
		$this->assertSame( 0, $this->plugin->retry_spool()['uploaded'], 'not due while its own flush may still be uploading it' );

		$this->now += 120;
		$this->assertSame( 1, $this->plugin->retry_spool()['uploaded'] );
		$this->assertSame( $batch->body, $this->s3->objects[ $batch->key ]['body'], 'byte for byte: same batch and mail ids' );
		$this->assertSame( array(), $this->plugin->spool()->states() );
	}

	public function test_a_batch_file_without_its_state_is_still_retried(): void {
		wp_mail( array( 'a@example.net', self::MARKER ), 'Hi', 'Body' );
		$batch = $this->plugin->queue()->drain( $this->now )[0];
		$this->retry()->keep( $batch );
		$this->plugin->spool()->save_state( $batch->id, array( 'attempts' => 2 ) + $this->plugin->spool()->states()[ $batch->id ] );
		unlink( $this->spool_dir . '/' . $batch->id . Postbag_Spool::STATE_SUFFIX );

		$this->assertSame( 0, $this->plugin->spool()->states()[ $batch->id ]['attempts'], 'the state written with the batch' );
		$this->assertSame( 1, $this->plugin->retry_spool( true )['uploaded'] );
	}

	public function test_uploads_go_in_bounded_waves(): void {
		$this->use_settings( array( 'chunk_max_mails' => 1 ) );
		for ( $n = 1; $n <= 70; $n++ ) {
			wp_mail( array( "u$n@example.net", self::MARKER ), "Mail $n", 'Body' );
		}

		$this->plugin->flush();

		$this->assertCount( 70, $this->s3->batches() );
		$this->assertSame( array( 32, 32, 6 ), array_map( 'count', $this->s3->calls ) );
	}

	public function test_files_of_earlier_versions_are_rewritten_with_the_guard(): void {
		$id = wp_generate_uuid4();
		mkdir( $this->spool_dir, 0700, true );
		file_put_contents(
			"{$this->spool_dir}/$id.batch",
			wp_json_encode(
				array(
					'key'         => "queue/$id.json",
					'body'        => '{"version":1,"batch_id":"' . $id . '"}',
					'mail_ids'    => array( 'm1' ),
					'attachments' => array( "queue/attachments/$id/m1/0" => base64_encode( 'blob' ) ),
				)
			)
		);
		file_put_contents(
			"{$this->spool_dir}/$id.state",
			wp_json_encode(
				array(
					'attempts'         => 4,
					'first_spooled_at' => $this->now - 7200,
					'next_attempt_at'  => $this->now + 9999,
					'last_error'       => 'HTTP 503',
					'mails'            => 1,
				)
			)
		);

		Postbag_Plugin::prepare_spool( $this->plugin->spool() ); // As activation does.

		$this->assertFileDoesNotExist( "{$this->spool_dir}/$id.batch" );
		$this->assertFileDoesNotExist( "{$this->spool_dir}/$id.state" );
		$this->assertStringStartsWith( Postbag_Spool::GUARD, (string) file_get_contents( "{$this->spool_dir}/$id.batch.php" ) );
		$this->assertSame( 4, $this->plugin->spool()->states()[ $id ]['attempts'] );
		$loaded = $this->plugin->spool()->load( $id );
		$this->assertSame( array( "queue/attachments/$id/m1/0" => 'blob' ), $loaded->attachments );

		$this->assertSame( 1, $this->plugin->retry_spool( true )['uploaded'] );
		$this->assertSame( 'blob', $this->s3->objects[ "queue/attachments/$id/m1/0" ]['body'] );
	}

	public function test_a_damaged_file_of_an_earlier_version_is_never_made_php(): void {
		mkdir( $this->spool_dir, 0700, true );
		file_put_contents( "{$this->spool_dir}/evil.batch", '<?php echo "PWNED";' );

		$problems = $this->plugin->spool()->problems();

		$this->assertFileExists( "{$this->spool_dir}/evil.batch" );
		$this->assertFileDoesNotExist( "{$this->spool_dir}/evil.batch.php" );
		$this->assertCount( 1, $problems );
		$this->assertStringContainsString( 'evil.batch', $problems[0] );
	}

	public function test_a_temporary_file_left_by_a_crash_is_removed_later(): void {
		mkdir( $this->spool_dir, 0700, true );
		$stale = "{$this->spool_dir}/.0123456789abcdef.tmp.php";
		$fresh = "{$this->spool_dir}/.fedcba9876543210.tmp.php";
		file_put_contents( $stale, Postbag_Spool::GUARD . 'half a batch' );
		file_put_contents( $fresh, Postbag_Spool::GUARD . 'being written' );
		touch( $stale, time() - 2 * Postbag_Spool::STALE_TEMP_SECONDS );

		$this->plugin->spool()->upgrade();

		$this->assertFileDoesNotExist( $stale );
		$this->assertFileExists( $fresh, 'maybe another process is writing it' );
	}
}
