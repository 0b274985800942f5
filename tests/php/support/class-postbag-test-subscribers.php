<?php
/**
 * Many subscribers in the test site's database, made in seconds.
 *
 * @package Postbag\Tests
 */

/**
 * Users made by MariaDB itself, not by wp_insert_user() (a password hash and
 * a dozen queries per user): `INSERT … SELECT` from MariaDB's sequence
 * engine into `wp_users`, and into `wp_usermeta` for `wp_capabilities` and
 * `wp_user_level` as wp_insert_user() would leave them, in one transaction;
 * for many users, with the indexes rebuilt afterwards. User n (1-based) is
 * `reader<n>`, `reader<n>@example.net`, "Reader <n>". Every user is a
 * subscriber; for each size S asked for, the first S users also hold the role
 * `bench_<S>`, so `array( 'role' => 'bench_1000' )` selects exactly 1,000 of
 * them through the same `wp_capabilities LIKE` query as `'subscriber'`, and
 * `bench_0` nobody.
 */
final class Postbag_Test_Subscribers {

	/** From this many users on, rebuilding the indexes after the rows beats updating them (without_indexes()). */
	const REBUILD_INDEXES_FROM = 100000;

	/** InnoDB's buffer pool for a million users (tune()): the harness's 16 MB would make it disk-bound. */
	const BUFFER_POOL_BYTES = 512 * 1024 * 1024;

	/**
	 * Makes `$count` subscribers and the roles of `$sizes`.
	 *
	 * @param wpdb  $db    The site's database.
	 * @param int   $count Users to make.
	 * @param int[] $sizes Sizes to make a role for (each at most `$count`).
	 * @return array<int, string> Role name by size.
	 */
	public static function create( wpdb $db, int $count, array $sizes ): array {
		$roles = array();
		foreach ( $sizes as $size ) {
			if ( $size > $count ) {
				throw new InvalidArgumentException( "Cannot select $size of $count users" );
			}
			$roles[ $size ] = self::role( $size );
			add_role( $roles[ $size ], "Bench: first $size subscribers", array( 'read' => true ) );
		}
		if ( $count < 1 ) {
			return $roles; // seq_1_to_0 would count down: 1, 0.
		}
		$first      = 1 + (int) $db->get_var( "SELECT COALESCE(MAX(ID), 0) FROM {$db->users}" );
		$statements = array_merge( array( self::users_sql( $db, $first, $count ) ), self::meta_sql( $db, $first, $count, array_keys( $roles ) ) );
		$fill       = static function () use ( $db, $statements ): void {
			self::query( $db, 'START TRANSACTION' );
			foreach ( $statements as $sql ) {
				self::query( $db, $sql );
			}
			self::query( $db, 'COMMIT' );
		};
		if ( $count < self::REBUILD_INDEXES_FROM ) {
			$fill();
		} else {
			self::without_indexes( $db, array( $db->users, $db->usermeta ), $fill );
		}
		return $roles;
	}

	/**
	 * The role held by the first `$size` users.
	 */
	public static function role( int $size ): string {
		return "bench_$size";
	}

	/**
	 * Removes the users create() made, and the roles of `$sizes`.
	 *
	 * @param wpdb  $db    The site's database.
	 * @param int[] $sizes As given to create().
	 */
	public static function remove( wpdb $db, array $sizes ): void {
		self::query( $db, "DELETE m FROM {$db->usermeta} m JOIN {$db->users} u ON u.ID = m.user_id WHERE u.user_pass = '*' AND u.user_email LIKE 'reader%@example.net'" );
		self::query( $db, "DELETE FROM {$db->users} WHERE user_pass = '*' AND user_email LIKE 'reader%@example.net'" );
		foreach ( $sizes as $size ) {
			remove_role( self::role( $size ) );
		}
	}

	/**
	 * A bigger buffer pool (resized live) and no flush per commit, like the
	 * database server of a site with a million users rather than a test's:
	 * call it before making that many.
	 */
	public static function tune( wpdb $db ): void {
		self::query( $db, 'SET GLOBAL innodb_buffer_pool_size = ' . self::BUFFER_POOL_BYTES );
		self::query( $db, 'SET GLOBAL innodb_flush_log_at_trx_commit = 2' );
	}

	/**
	 * @param wpdb $db    The site's database.
	 * @param int  $first ID of user 1.
	 * @param int  $count Users.
	 */
	private static function users_sql( wpdb $db, int $first, int $count ): string {
		$offset = $first - 1;
		// '*' is no password hash: nobody can log in as them.
		return "INSERT INTO {$db->users} (ID, user_login, user_pass, user_nicename, user_email, user_url, user_registered, user_activation_key, user_status, display_name)
			SELECT seq + $offset, CONCAT('reader', seq), '*', CONCAT('reader', seq), CONCAT('reader', seq, '@example.net'), '', '2026-11-01 00:00:00', '', 0, CONCAT('Reader ', seq)
			FROM seq_1_to_$count";
	}

	/**
	 * @param wpdb  $db    The site's database.
	 * @param int   $first ID of user 1.
	 * @param int   $count Users.
	 * @param int[] $sizes The first `$size` users also hold role( $size ).
	 * @return string[] Statements.
	 */
	private static function meta_sql( wpdb $db, int $first, int $count, array $sizes ): array {
		$offset = $first - 1;
		$held   = '1';
		$roles  = "'s:10:\"subscriber\";b:1;'";
		foreach ( array_filter( $sizes ) as $size ) {
			$role   = self::role( $size );
			$held  .= " + (seq <= $size)";
			$roles .= sprintf( ", IF(seq <= %d, 's:%d:\"%s\";b:1;', '')", $size, strlen( $role ), $role );
		}
		$capabilities = $db->get_blog_prefix() . 'capabilities';
		$level        = $db->get_blog_prefix() . 'user_level';
		return array(
			// The same serialized array update_user_meta() stores: a:<n>:{s:10:"subscriber";b:1;...}.
			"INSERT INTO {$db->usermeta} (user_id, meta_key, meta_value)
				SELECT seq + $offset, '$capabilities', CONCAT('a:', $held, ':{', $roles, '}') FROM seq_1_to_$count",
			"INSERT INTO {$db->usermeta} (user_id, meta_key, meta_value)
				SELECT seq + $offset, '$level', '0' FROM seq_1_to_$count",
		);
	}

	/**
	 * Runs `$fill` with the secondary indexes of `$tables` dropped, then
	 * builds them again as they were: InnoDB builds an index from sorted rows
	 * much faster than it updates it row by row (a million users: 19 to 21 s
	 * instead of 30 s, measured on the 2-core CI machine under load).
	 *
	 * @param wpdb     $db     The site's database.
	 * @param string[] $tables Tables.
	 * @param callable $fill   Fills them.
	 */
	private static function without_indexes( wpdb $db, array $tables, callable $fill ): void {
		$indexes = array();
		foreach ( $tables as $table ) {
			foreach ( $db->get_results( "SHOW INDEX FROM $table", ARRAY_A ) as $column ) {
				if ( 'PRIMARY' !== $column['Key_name'] ) {
					$index = &$indexes[ $table ][ $column['Key_name'] ];
					$index['unique'] = '0' === (string) $column['Non_unique'];
					$index['columns'][ (int) $column['Seq_in_index'] ] = "`{$column['Column_name']}`" . ( null === $column['Sub_part'] ? '' : "({$column['Sub_part']})" );
					unset( $index );
				}
			}
		}
		foreach ( $indexes as $table => $by_name ) {
			self::query( $db, "ALTER TABLE $table " . implode( ', ', array_map( static function ( string $name ): string { return "DROP INDEX `$name`"; }, array_keys( $by_name ) ) ) );
		}
		try {
			$fill();
		} finally {
			foreach ( $indexes as $table => $by_name ) {
				$adds = array();
				foreach ( $by_name as $name => $index ) {
					ksort( $index['columns'] );
					$adds[] = ( $index['unique'] ? 'ADD UNIQUE INDEX' : 'ADD INDEX' ) . " `$name` (" . implode( ', ', $index['columns'] ) . ')';
				}
				self::query( $db, "ALTER TABLE $table " . implode( ', ', $adds ) );
			}
		}
	}

	private static function query( wpdb $db, string $sql ): void {
		if ( false === $db->query( $sql ) ) {
			throw new RuntimeException( 'Making users failed: ' . $db->last_error );
		}
	}
}
