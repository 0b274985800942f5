<?php
/**
 * Flushing early, measured against memory_limit.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * @covers Postbag_Memory_Budget
 * @covers Postbag_Queue
 */
final class Postbag_MemoryBudgetTest extends Postbag_Unit_Test_Case {

	const MB = 1048576;

	/** @var int What the fake budget reports as used. */
	private $used = 0;

	/** @var string The fake memory_limit. */
	private $limit = '128M';

	private function budget(): Postbag_Memory_Budget {
		return new Postbag_Memory_Budget(
			function (): int {
				return $this->used;
			},
			function (): string {
				return $this->limit;
			}
		);
	}

	public function limits(): array {
		return array(
			'128M'           => array( '128M', 128 * self::MB ),
			'lower case m'   => array( '256m', 256 * self::MB ),
			'1G'             => array( '1G', 1024 * self::MB ),
			'512K'           => array( '512K', 512 * 1024 ),
			'bytes'          => array( '134217728', 134217728 ),
			'blanks'         => array( ' 64M ', 64 * self::MB ),
			'-1, no limit'   => array( '-1', 0 ),
			'0'              => array( '0', 0 ),
			'empty'          => array( '', 0 ),
		);
	}

	/**
	 * @dataProvider limits
	 */
	public function test_memory_limit_is_read_as_php_reads_it( string $value, int $bytes ): void {
		$this->assertSame( $bytes, Postbag_Memory_Budget::bytes( $value ) );
	}

	public function test_the_reserve_is_a_quarter_at_least_24_mb_at_most_half(): void {
		$budget = $this->budget();
		foreach ( array(
			'128M' => 96,
			'1G'   => 768,
			'64M'  => 40,
			'40M'  => 20,
		) as $limit => $threshold ) {
			$this->limit = $limit;
			$this->assertSame( $threshold * self::MB, $budget->threshold(), $limit );
		}
		$this->limit = '-1';
		$this->assertSame( PHP_INT_MAX, $budget->threshold() );
	}

	public function test_low_once_usage_reaches_the_threshold(): void {
		$budget     = $this->budget();
		$this->used = 95 * self::MB;
		$this->assertFalse( $budget->is_low() );
		$this->used = 96 * self::MB;
		$this->assertTrue( $budget->is_low() );
	}

	public function test_a_raised_limit_is_noticed(): void {
		$budget     = $this->budget();
		$this->used = 100 * self::MB;
		$this->assertTrue( $budget->is_low() );

		$this->limit = '256M'; // wp_raise_memory_limit() in the admin.
		$this->assertFalse( $budget->is_low() );
	}

	public function test_the_real_budget_reads_this_process(): void {
		$budget = new Postbag_Memory_Budget();
		$this->assertSame( Postbag_Memory_Budget::bytes( (string) ini_get( 'memory_limit' ) ) > 0, PHP_INT_MAX !== $budget->threshold() );
		$this->assertFalse( $budget->is_low(), 'the test run is far from its limit' );
	}

	/**
	 * A plugin whose queue asks the fake budget.
	 */
	private function plugin_with_budget(): void {
		$this->plugin->remove_hooks();
		$this->plugin = new Postbag_Plugin(
			new Postbag_Config( array( 'bucket' => 'postbag-test' ) ),
			$this->s3,
			function (): int {
				return $this->now;
			},
			new Postbag_Spool( $this->spool_dir ),
			$this->budget()
		);
		Postbag_Plugin::replace( $this->plugin );
	}

	public function test_a_low_budget_flushes_full_batches_before_shutdown(): void {
		$this->plugin_with_budget();
		$this->used = 97 * self::MB;

		for ( $n = 1; $n <= 24; $n++ ) {
			$this->assertTrue( wp_mail( array( "u$n@example.net", self::MARKER ), "Mail $n", 'Body' ) );
		}
		$this->assertSame( array(), $this->s3->objects, 'not worth a flush: less than a batch' );
		$this->assertTrue( wp_mail( array( 'u25@example.net', self::MARKER ), 'Mail 25', 'Body' ) );

		$this->assertSame( array( 25 ), array_map( 'count', array_column( $this->s3->batches(), 'emails' ) ), 'one full batch, uploaded early' );
		$this->assertSame( 0, $this->plugin->queue()->count() );
		$this->assertSame( array(), $this->plugin->spool()->states(), 'and out of the spool' );
	}

	public function test_with_headroom_nothing_is_flushed_early(): void {
		$this->plugin_with_budget();
		$this->used = 50 * self::MB;

		for ( $n = 1; $n <= 60; $n++ ) {
			wp_mail( array( "u$n@example.net", self::MARKER ), "Mail $n", 'Body' );
		}

		$this->assertSame( array(), $this->s3->objects );
		$this->assertSame( 60, $this->plugin->queue()->count() );
	}

	public function test_draining_lets_go_of_each_batch_as_it_goes(): void {
		$queue = new Postbag_Queue( 25, 1 << 20 );
		$site  = array( 'url' => 'https://a.example.org' );
		$meta  = array( 'from' => 'a@example.org' );
		for ( $n = 0; $n < 2000; $n++ ) {
			$queue->add(
				$site,
				$meta,
				array(
					'id'      => "m$n",
					'to'      => array( 'z@example.net' ),
					'subject' => 's',
					'text'    => str_repeat( 'x', 2000 ) . $n,
				),
				array(),
				2100
			);
		}
		$before = memory_get_usage();
		$peak   = 0;
		$count  = 0;
		foreach ( $queue->batches( 0 ) as $batch ) {
			$count += count( $batch->mail_ids );
			$peak   = max( $peak, memory_get_usage() - $before );
			unset( $batch );
		}

		$this->assertSame( 2000, $count );
		$this->assertSame( 0, $queue->count() );
		$this->assertLessThan( 1024 * 1024, $peak, 'one 50 KB batch at a time, not the 4 MB the queue held serialized' );
		$this->assertLessThan( $before, memory_get_usage() + 2 * 1024 * 1024, 'the mails were let go' );
	}
}
