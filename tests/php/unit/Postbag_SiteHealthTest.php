<?php
/**
 * Site Health: the spool and the allowed senders.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Site_Health
 * @covers Postbag_Allowed_Senders
 */
final class Postbag_SiteHealthTest extends Postbag_Unit_Test_Case {

	/** WordPress's default From on the test site (blog.example.org). */
	const DEFAULT_FROM = 'wordpress@blog.example.org';

	/**
	 * Makes `$address` the default From through the wp_mail_from filter.
	 */
	private static function send_from( string $address ): void {
		add_filter(
			'wp_mail_from',
			static function () use ( $address ): string {
				return $address;
			}
		);
	}

	public function test_both_tests_are_listed(): void {
		$tests = apply_filters( 'site_status_tests', array( 'direct' => array() ) );

		$this->assertSame( 'good', call_user_func( $tests['direct']['postbag_spool']['test'] )['status'] );
		$this->assertSame( 'recommended', call_user_func( $tests['direct']['postbag_sender']['test'] )['status'] );
	}

	public function test_without_the_constant_it_is_a_recommendation(): void {
		$result = $this->plugin->site_health()->sender_result();

		$this->assertSame( 'recommended', $result['status'] );
		$this->assertStringContainsString( 'POSTBAG_ALLOWED_SENDERS', $result['description'] );
	}

	public function test_a_default_from_outside_the_list_is_critical(): void {
		$this->use_settings( array( 'allowed_senders' => 'example.org' ) );

		$result = $this->plugin->site_health()->sender_result();

		$this->assertSame( self::DEFAULT_FROM, $this->plugin->interceptor()->effective_default_from() );
		$this->assertSame( 'critical', $result['status'] );
		$this->assertSame( 'postbag_sender', $result['test'] );
		$this->assertStringContainsString( self::DEFAULT_FROM, $result['label'] );
		$this->assertStringContainsString( 'POSTBAG_ALLOWED_SENDERS (example.org)', $result['description'] );
	}

	public function test_the_default_from_after_wp_mail_from_counts(): void {
		$this->use_settings( array( 'allowed_senders' => 'news@example.org, example.net' ) );
		self::send_from( 'News@Example.org' );

		$this->assertSame( 'good', $this->plugin->site_health()->sender_result()['status'] );
	}

	public function test_the_list_is_the_lambdas(): void {
		$senders = new Postbag_Allowed_Senders( ' Example.org , news@example.com,, ' );

		$this->assertTrue( $senders->is_restricted() );
		$this->assertTrue( $senders->allows( 'anyone@example.org' ) );
		$this->assertTrue( $senders->allows( 'ANYONE@EXAMPLE.ORG' ) );
		$this->assertTrue( $senders->allows( 'news@example.com' ) );
		$this->assertFalse( $senders->allows( 'other@example.com' ) );
		$this->assertFalse( $senders->allows( 'a@mail.example.org' ), 'a domain does not cover its subdomains' );
		$this->assertFalse( $senders->allows( 'example.org@evil.example' ) );
		$this->assertTrue( ( new Postbag_Allowed_Senders( '' ) )->allows( 'anyone@anywhere.example' ) );
		$this->assertFalse( ( new Postbag_Allowed_Senders( ' , ' ) )->is_restricted() );
	}

	public function test_a_spool_that_cannot_be_written_is_critical(): void {
		file_put_contents( $this->temp_dir . '/file', 'not a directory' );
		$health = new Postbag_Site_Health( new Postbag_Spool( $this->temp_dir . '/file/spool' ), new Postbag_Allowed_Senders( '' ), $this->plugin->interceptor() );

		$result = $health->spool_result();

		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( esc_html( $this->temp_dir . '/file/spool' ), $result['description'] );
	}

	public function test_a_healthy_spool_says_where_it_is_and_why_it_is_private(): void {
		$result = $this->plugin->site_health()->spool_result();

		$this->assertSame( 'good', $result['status'] );
		$this->assertStringContainsString( esc_html( $this->spool_dir ), $result['description'] );
		$this->assertDirectoryExists( $this->spool_dir, 'checked by making it ready' );
	}

	public function test_descriptions_are_escaped(): void {
		$this->use_settings( array( 'allowed_senders' => 'example.org' ) );
		self::send_from( '<script>x</script>@evil.example' );

		$result = $this->plugin->site_health()->sender_result();

		$this->assertStringNotContainsString( '<script>', $result['description'] );
		$this->assertStringContainsString( '&lt;script&gt;', $result['description'] );
	}
}
