<?php
/**
 * WordPress's proxy settings honoured by the plugin's uploads.
 *
 * @package Postbag\Tests
 */

/**
 * A site request whose wp-config.php defines WP_PROXY_HOST, _PORT,
 * _USERNAME and _PASSWORD uploads its batch through that proxy (a tiny one
 * on 127.0.0.1); with the endpoint's host in WP_PROXY_BYPASS_HOSTS it goes
 * direct. Each request runs in its own PHP process: constants cannot be
 * undefined in this one.
 */
final class Postbag_ProxyTest extends Postbag_Test_Live_Case {

	/** @var Postbag_Test_Proxy|null */
	private $proxy;

	protected function setUp(): void {
		parent::setUp();
		$this->proxy = new Postbag_Test_Proxy( 'site:proxy pass' );
	}

	protected function tearDown(): void {
		$this->proxy->stop();
		parent::tearDown();
	}

	/**
	 * Runs send-marked-mail.php as a site with these extra constants.
	 *
	 * @param array<string, mixed> $proxy_constants WP_PROXY_* constants.
	 */
	private function send_with( array $proxy_constants ): void {
		$constants = Postbag_Test_Local_Aws::site_constants( self::$aws->endpoint, $this->bucket, $this->spool_dir ) + $proxy_constants;
		$log       = Postbag_Test_WordPress::$sandbox->path( 'proxy-request.log' );
		$request   = new Postbag_Test_Process(
			array( PHP_BINARY, __DIR__ . '/requests/send-marked-mail.php', Postbag_Test_WordPress::$sandbox->path( 'wp-config.php' ), json_encode( $constants ), 'reader@example.net' ),
			$log,
			array( 'PATH' => (string) getenv( 'PATH' ) ),
			true
		);
		$this->assertSame( '{"queued":true}', $request->read_line( 30 ) );
		$this->assertSame( 0, $request->wait( 30 ), (string) file_get_contents( $log ) );
	}

	private function proxy_constants(): array {
		return array(
			'WP_PROXY_HOST'     => '127.0.0.1',
			'WP_PROXY_PORT'     => (string) $this->proxy->port,
			'WP_PROXY_USERNAME' => 'site',
			'WP_PROXY_PASSWORD' => 'proxy pass',
		);
	}

	public function test_uploads_go_through_wordpress_proxy_with_its_credentials(): void {
		$this->send_with( $this->proxy_constants() );

		$requests = $this->proxy->requests();
		$this->assertCount( 1, $requests, 'one batch, one PUT, through the proxy' );
		$this->assertSame( 'PUT', $requests[0]['method'] );
		$this->assertStringStartsWith( self::$aws->endpoint . '/' . $this->bucket . '/queue/', $requests[0]['url'] );
		$this->assertSame( 'Basic ' . base64_encode( 'site:proxy pass' ), $requests[0]['proxy_authorization'] );
		$this->assertCount( 1, self::batches( $this->objects() ), 'the proxy forwarded it to the bucket' );
	}

	public function test_a_bypassed_host_goes_direct(): void {
		$this->send_with( $this->proxy_constants() + array( 'WP_PROXY_BYPASS_HOSTS' => 'localhost, 127.0.0.1' ) );

		$this->assertSame( array(), $this->proxy->requests() );
		$this->assertCount( 1, self::batches( $this->objects() ) );
	}
}
