<?php
/**
 * Base class for tests of a page behind nginx and PHP-FPM that notifies a role's users.
 *
 * @package Postbag\Tests
 */

/**
 * Each test gets `static::USERS` users of their own role in the shared
 * database and a Postbag_Test_Notify_Site (nginx and PHP-FPM serving the
 * notify page, pointed at the test's bucket and spool), both removed
 * afterwards. Without nginx or php-fpm the test is skipped, and fails when
 * CI=true.
 */
abstract class Postbag_Test_Notify_Site_Case extends Postbag_Test_Live_Case {

	/** Users of the test's role; a subclass sets its own. */
	const USERS = 1;

	/** @var Postbag_Test_Notify_Site|null */
	protected $site;

	/** @var bool The users are in the database. */
	private $made = false;

	protected function setUp(): void {
		parent::setUp();
		$this->require_nginx_and_php_fpm();
		$this->made = true;
		Postbag_Test_Subscribers::create( $GLOBALS['wpdb'], static::USERS, array( static::USERS ) );
		$this->site = new Postbag_Test_Notify_Site( self::$aws, $this->bucket, $this->spool_dir );
	}

	protected function tearDown(): void {
		if ( null !== $this->site ) {
			$this->site->stop();
		}
		if ( $this->made ) {
			// The site's users are shared by the whole run: leave it as the harness made it.
			Postbag_Test_Subscribers::remove( $GLOBALS['wpdb'], array( static::USERS ) );
		}
		parent::tearDown();
	}
}
