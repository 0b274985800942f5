<?php
/**
 * The plugin on a WordPress network (multisite), in a request of its own.
 *
 * @package Postbag\Tests
 */

/**
 * Each batch records the site its mail came from, even when one request
 * sends for several sites (switch_to_blog()); the Postbag screen and
 * `postbag/v1` belong to the network's super admins.
 */
final class Postbag_MultisiteTest extends Postbag_Test_Live_Case {

	/**
	 * Runs one request script of requests/ on the test network.
	 *
	 * @param string $script File name in requests/.
	 * @return array{0: string, 1: array} The first line it printed, and the network's settings.
	 */
	private function run_on_network( string $script ): array {
		$network = Postbag_Test_WordPress::network();
		$log     = Postbag_Test_WordPress::$sandbox->path( basename( $script, '.php' ) . '.log' );
		$request = new Postbag_Test_Process(
			array(
				PHP_BINARY,
				__DIR__ . '/requests/' . $script,
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
		return array( (string) $answer, $network );
	}

	public function test_each_batch_names_the_site_its_mail_came_from(): void {
		list( $answer, $network ) = $this->run_on_network( 'send-from-two-sites.php' );
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

	public function test_an_unsubscribe_from_one_sites_list_does_not_stop_the_other_site(): void {
		list( $answer, $network ) = $this->run_on_network( 'unsubscribe-on-two-sites.php' );
		$sites                    = json_decode( $answer, true );
		$main                     = $sites[ Postbag_Test_WordPress::SITE_URL ] ?? null;
		$second                   = $sites[ $network['second_site'] ] ?? null;

		$this->assertSame( 200, $sites['unsubscribe'] ?? null, "answer: $answer" );
		$this->assertNotSame( $main['list'], $second['list'], 'each site has its own list on the wire' );
		foreach ( array( $main['list'], $second['list'] ) as $list ) {
			$this->assertMatchesRegularExpression( '/^[0-9a-f]{8}-notifications$/', $list, 'within meta.list\'s pattern' );
		}
		$this->assertSame( array( true, false ), array( $main['suppressed'], $second['suppressed'] ), 'suppressed on the first site only' );

		$manifests = self::batches( $this->objects( 'jobs/' ) );
		$first     = $manifests[ "jobs/{$main['job']}/manifest.json" ];
		$other     = $manifests[ "jobs/{$second['job']}/manifest.json" ];
		$this->assertSame( array( $main['list'], 0 ), array( $first['meta']['list'], $first['recipients'] ), 'the first site leaves the reader out' );
		$this->assertSame( array( $second['list'], 1 ), array( $other['meta']['list'], $other['recipients'] ), 'the second site still mails the reader' );
	}

	public function test_the_screen_is_in_the_network_admin_for_super_admins_only(): void {
		list( $answer, $network ) = $this->run_on_network( 'screen-on-network.php' );
		$seen                     = json_decode( $answer, true );
		$site                     = $seen['site_admin'] ?? null;
		$super                    = $seen['super_admin'] ?? null;
		unset( $network );

		$this->assertSame( array( true, false, true, false ), array( $site['multisite'], $site['super_admin'], $site['manage_options'], $site['manage_network_options'] ), "a site administrator, not the network's: $answer" );
		$this->assertSame( array( true, true ), array( $super['super_admin'], $super['manage_network_options'] ) );
		foreach ( array( $site, $super ) as $user ) {
			$this->assertNull( $user['site_menu'], 'no Postbag entry in a site\'s admin menu' );
			$this->assertSame( 'manage_network_options', $user['network_menu'], 'one entry, in the network admin, for those who manage the network' );
		}
		$this->assertStringStartsWith( Postbag_Test_WordPress::SITE_URL . '/wp-admin/network/admin.php?page=postbag', $super['screen_url'] );
		$this->assertSame( 'not hooked, refused 403', $site['page'], 'wp-admin has no page for the site administrator, and the screen refuses a direct call' );
		$this->assertSame( 'hooked, rendered', $super['page'] );

		$this->assertGreaterThanOrEqual( 10, count( $site['routes'] ), 'every route: ' . $answer );
		$this->assertArrayHasKey( 'POST /postbag/v1/jobs/1/schedule', $site['routes'] );
		$this->assertSame( array( 403 ), array_values( array_unique( $site['routes'] ) ), 'the site administrator is refused on every route: ' . wp_json_encode( $site['routes'] ) );
		$this->assertArrayHasKey( 'GET /postbag/v1/scheduled', $super['routes'] );
		$this->assertSame( array( 200 ), array_values( array_unique( $super['routes'] ) ), 'the super admin reads them: ' . $answer );
	}
}
