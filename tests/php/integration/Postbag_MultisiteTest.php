<?php
/**
 * The plugin on a WordPress network (multisite), in a request of its own.
 *
 * @package Postbag\Tests
 */

/**
 * Each batch records the site its mail came from, even when one request
 * sends for several sites (switch_to_blog()).
 */
final class Postbag_MultisiteTest extends Postbag_Test_Live_Case {

	public function test_each_batch_names_the_site_its_mail_came_from(): void {
		$network = Postbag_Test_WordPress::network();
		$log     = Postbag_Test_WordPress::$sandbox->path( 'multisite-request.log' );
		$request = new Postbag_Test_Process(
			array(
				PHP_BINARY,
				__DIR__ . '/requests/send-from-two-sites.php',
				Postbag_Test_WordPress::$sandbox->path( 'wp-config.php' ),
				$network['constants'],
				json_encode(
					array(
						'POSTBAG_BUCKET'                => $this->bucket,
						'POSTBAG_ENDPOINT'              => self::$aws->endpoint,
						'POSTBAG_PATH_STYLE'            => true,
						'POSTBAG_AWS_ACCESS_KEY_ID'     => Postbag_Test_Local_Aws::ACCESS_KEY_ID,
						'POSTBAG_AWS_SECRET_ACCESS_KEY' => Postbag_Test_Local_Aws::SECRET_ACCESS_KEY,
						'POSTBAG_SPOOL_DIR'             => $this->spool_dir,
						// WordPress 6.1's multisite code has PHP 8.2 deprecations of its own.
						'WP_DEBUG_DISPLAY'              => false,
					)
				),
			),
			$log,
			array( 'PATH' => (string) getenv( 'PATH' ) ),
			true
		);
		$answer = $request->read_line( 30 );
		$status = $request->wait( 30 );

		$this->assertSame( 0, $status, (string) file_get_contents( $log ) );
		$main   = Postbag_Test_WordPress::SITE_URL;
		$second = $network['second_site'];
		$this->assertSame( array( $main => true, $second => true ), json_decode( (string) $answer, true ), "answer: $answer" );

		$sites = array();
		foreach ( self::batches( $this->objects() ) as $batch ) {
			foreach ( $batch['emails'] as $mail ) {
				$sites[ $mail['subject'] ] = $batch['site'];
			}
		}
		ksort( $sites );
		$this->assertSame(
			array(
				'From site 1' => array(
					'url'     => $main,
					'blog_id' => 1,
				),
				'From site 2' => array(
					'url'     => $second,
					'blog_id' => 2,
				),
			),
			$sites,
			'one batch per site, each naming its site'
		);
	}
}
