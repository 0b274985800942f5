<?php
/**
 * The site's copy of the suppression list.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Addresses the site must not mail, in `{$wpdb->base_prefix}postbag_suppressions`
 * (one table for a whole network: an address that bounced bounces on every
 * site), keyed by address hash and scope (`all`, or `list:<name>`).
 *
 * The sender's store on the AWS side is the one that counts: it checks every
 * non-priority send. This copy lets the plugin leave suppressed recipients
 * out of a job before they are even written (cheaper, and visible in the
 * job's counts), and lets the site owner see and undo entries. Rows come from
 * this site (an unsubscribe, an administrator) or are mirrored from the
 * sender's `suppressions/export.json` (bounces, complaints, an operator's
 * entries); `origin` says which. A row the export lists becomes the
 * sender's (`origin` = sender), so the sender's removal (an operator's
 * `postbag suppression remove`, an expiry) reaches the site too; a row made
 * here stays until an export generated well after it (MIRROR_MARGIN, the
 * inbox's round trip) leaves it out and its inbox document is no longer
 * waiting in the spool.
 *
 * Addresses are normalised as the shared contract says (strip ASCII
 * whitespace, Unicode full case folding, no IDNA conversion) and hashed with
 * SHA-256: the vectors in
 * fixtures/suppression/address-hash.json hold both sides to it.
 */
final class Postbag_Suppressions {

	/** Scope of a bounce, a complaint or a manual entry for every list. */
	const ALL = 'all';

	/** Where a row came from: made on this site, or mirrored from the sender's export. */
	const ORIGIN_SITE   = 'site';
	const ORIGIN_SENDER = 'sender';

	/**
	 * Hashes per query when checking a page of recipients. Measured on
	 * MariaDB 10.11 with 50,000 entries: 200 hashes take ~2-3 ms, 400 ~24 ms
	 * and 999 ~57 ms (past eq_range_index_dive_limit, 200, the optimizer stops
	 * diving per range), and 1,000 or more become a table value constructor
	 * subquery (in_predicate_conversion_threshold) at ~100 ms.
	 */
	const LOOKUP_CHUNK = 200;

	/**
	 * Most entries loaded whole into memory for a job's stream (~90 bytes
	 * each as binary keys: 4.5 MB at most). Measured at 100,000 users, one
	 * load of 50,000 entries costs a fraction of the 500 lookups it replaces;
	 * a larger list is looked up a page at a time instead.
	 */
	const SET_MAX = 50000;

	/**
	 * Seconds an export must be newer than a row made here before its absence
	 * from the export removes the row: the inbox document goes up after the
	 * response and the sender rewrites the export within a minute of a change.
	 */
	const MIRROR_MARGIN = 10 * MINUTE_IN_SECONDS;

	/** @var bool The table is known to exist in this process. */
	private $ready = false;

	/**
	 * ASCII whitespace stripped from both ends (only that: a NBSP is part of
	 * the address), then Unicode full case folding, as the sender normalises
	 * it (Python `str.strip(" \t\n\r\x0b\x00").casefold()`). Folding, not
	 * lower-casing: the two languages lower-case Σ, ß and İ differently.
	 *
	 * @param string $address A bare address.
	 */
	public static function normalise( string $address ): string {
		return mb_convert_case( trim( $address, " \t\n\r\0\x0B" ), MB_CASE_FOLD, 'UTF-8' );
	}

	/**
	 * Lower-case hex SHA-256 of the normalised address's UTF-8 bytes.
	 *
	 * @param string $address A bare address.
	 */
	public static function hash( string $address ): string {
		return hash( 'sha256', self::normalise( $address ) );
	}

	/**
	 * `all` or `list:<name>` for a list name (Postbag_Notify_Args::LIST_PATTERN).
	 *
	 * @param string|null $list List name, or null for every list.
	 */
	public static function scope( ?string $list ): string {
		return null === $list ? self::ALL : 'list:' . $list;
	}

	/** Whether a scope is well formed. */
	public static function is_scope( string $scope ): bool {
		return self::ALL === $scope || 1 === preg_match( '/^list:[a-z0-9][a-z0-9_-]{0,63}$/', $scope );
	}

	public static function table(): string {
		return $GLOBALS['wpdb']->base_prefix . 'postbag_suppressions';
	}

	/** Creates or upgrades the table (activation, and the first use where no activation ran). */
	public static function install(): void {
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table = self::table();
		// dbDelta's format: two spaces after PRIMARY KEY, one field per line. Hashes and scopes
		// are ASCII: compared byte by byte, not by the site's Unicode collation.
		dbDelta(
			"CREATE TABLE $table (
address_hash char(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
scope varchar(70) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
address varchar(254) NOT NULL DEFAULT '',
reason varchar(32) NOT NULL,
source varchar(32) NOT NULL,
origin varchar(8) NOT NULL,
created_at datetime NOT NULL,
PRIMARY KEY  (address_hash,scope),
KEY address (address(191))
) {$wpdb->get_charset_collate()};"
		);
	}

	/** Drops the table (uninstall). */
	public static function uninstall(): void {
		global $wpdb;
		$wpdb->query( 'DROP TABLE IF EXISTS ' . self::table() ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared -- a fixed name.
	}

	/**
	 * Records an entry; one already there keeps its time (unsubscribing twice is fine).
	 *
	 * @param string $address Bare address, or '' when only its hash is known.
	 * @param string $scope   See scope().
	 * @param string $reason  `unsubscribe`, `manual`, `bounce`, `complaint`...
	 * @param string $source  Who made it (`site`, `ses`, `operator`...).
	 * @param int    $at      Unix time.
	 * @param string $origin  ORIGIN_SITE or ORIGIN_SENDER.
	 * @param string $hash    Its hash when the address is '' (a mirrored entry).
	 * @return bool False when the database refused it.
	 */
	public function add( string $address, string $scope, string $reason, string $source, int $at, string $origin = self::ORIGIN_SITE, string $hash = '' ): bool {
		global $wpdb;
		$this->ensure();
		$table = self::table();
		return false !== $wpdb->query(
			$wpdb->prepare(
				// phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- the table name is fixed.
				"INSERT INTO $table (address_hash, scope, address, reason, source, origin, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)
				ON DUPLICATE KEY UPDATE reason = VALUES(reason), source = VALUES(source), address = IF(VALUES(address) = '', address, VALUES(address)),
				origin = IF(VALUES(origin) = %s, VALUES(origin), origin)",
				'' === $hash ? self::hash( $address ) : $hash,
				$scope,
				self::normalise( $address ),
				$reason,
				$source,
				$origin,
				gmdate( 'Y-m-d H:i:s', $at ),
				self::ORIGIN_SENDER // Once the sender has a row, its removal there removes it here.
			)
		);
	}

	/**
	 * Removes an entry (every scope when `$scope` is null).
	 *
	 * @param string      $hash  Address hash.
	 * @param string|null $scope See scope().
	 * @return int Rows removed.
	 */
	public function remove( string $hash, ?string $scope = null ): int {
		global $wpdb;
		$this->ensure();
		$where = array( 'address_hash' => $hash );
		if ( null !== $scope ) {
			$where['scope'] = $scope;
		}
		return (int) $wpdb->delete( self::table(), $where );
	}

	/**
	 * The entries of one hash.
	 *
	 * @param string $hash Address hash.
	 * @return array[]
	 */
	public function entries( string $hash ): array {
		global $wpdb;
		$this->ensure();
		$table = self::table();
		// phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- the table name is fixed.
		return $wpdb->get_results( $wpdb->prepare( "SELECT * FROM $table WHERE address_hash = %s ORDER BY scope", $hash ), ARRAY_A );
	}

	/**
	 * Which of these hashes are suppressed in any of these scopes: one query
	 * per LOOKUP_CHUNK hashes, never one per recipient.
	 *
	 * @param string[] $hashes Address hashes.
	 * @param string[] $scopes Scopes, e.g. `all` and the job's list.
	 * @return array<string, true> Suppressed hash => true.
	 * @throws RuntimeException When the database answers with an error (a job must not go out unchecked).
	 */
	public function suppressed( array $hashes, array $scopes ): array {
		global $wpdb;
		$found = array();
		if ( ! $hashes ) {
			return $found;
		}
		$this->ensure();
		$table = self::table();
		foreach ( array_chunk( array_values( array_unique( $hashes ) ), self::LOOKUP_CHUNK ) as $chunk ) {
			$sql = "SELECT DISTINCT address_hash FROM $table WHERE scope IN (" . implode( ',', array_fill( 0, count( $scopes ), '%s' ) )
				. ') AND address_hash IN (' . implode( ',', array_fill( 0, count( $chunk ), '%s' ) ) . ')';
			$rows = $wpdb->get_col( $wpdb->prepare( $sql, array_merge( $scopes, $chunk ) ) ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared -- placeholders only.
			if ( '' !== $wpdb->last_error ) {
				throw new RuntimeException( sprintf( 'Reading the suppression list failed: %s', $wpdb->last_error ) );
			}
			foreach ( $rows as $hash ) {
				$found[ $hash ] = true;
			}
		}
		return $found;
	}

	/**
	 * Every hash suppressed in these scopes, as 32-byte binary keys, when
	 * there are at most SET_MAX of them (one query each for the count and
	 * the hashes); null for a larger list.
	 *
	 * @param string[] $scopes Scopes.
	 * @return array<string, true>|null Binary hash => true.
	 * @throws RuntimeException When the database answers with an error.
	 */
	public function suppressed_set( array $scopes ): ?array {
		global $wpdb;
		$this->ensure();
		$table = self::table();
		$in    = implode( ',', array_fill( 0, count( $scopes ), '%s' ) );
		// phpcs:disable WordPress.DB.PreparedSQL -- placeholders only, the table name is fixed.
		$count = (int) $wpdb->get_var( $wpdb->prepare( "SELECT COUNT(*) FROM $table WHERE scope IN ($in)", $scopes ) );
		if ( $count > self::SET_MAX || '' !== $wpdb->last_error ) {
			if ( '' !== $wpdb->last_error ) {
				throw new RuntimeException( sprintf( 'Reading the suppression list failed: %s', $wpdb->last_error ) );
			}
			return null;
		}
		$hashes = $count ? $wpdb->get_col( $wpdb->prepare( "SELECT UNHEX(address_hash) FROM $table WHERE scope IN ($in)", $scopes ) ) : array();
		// phpcs:enable
		if ( '' !== $wpdb->last_error ) {
			throw new RuntimeException( sprintf( 'Reading the suppression list failed: %s', $wpdb->last_error ) );
		}
		return array_fill_keys( $hashes, true );
	}

	/**
	 * A page of entries, newest first, for the admin route.
	 *
	 * @param string $search   Part of an address, or a whole hash; '' for all.
	 * @param int    $page     From 1.
	 * @param int    $per_page Entries per page.
	 * @return array{entries: array[], total: int}
	 */
	public function page( string $search, int $page, int $per_page ): array {
		global $wpdb;
		$this->ensure();
		$table = self::table();
		$where = '1=1';
		if ( '' !== $search ) {
			$where = preg_match( '/^[0-9a-f]{64}$/', $search )
				? $wpdb->prepare( 'address_hash = %s', $search )
				: $wpdb->prepare( 'address LIKE %s', '%' . $wpdb->esc_like( self::normalise( $search ) ) . '%' );
		}
		// phpcs:disable WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- $where is prepared above, the table name is fixed.
		$total   = (int) $wpdb->get_var( "SELECT COUNT(*) FROM $table WHERE $where" );
		$entries = $wpdb->get_results( $wpdb->prepare( "SELECT address_hash, scope, address, reason, source, origin, created_at FROM $table WHERE $where ORDER BY created_at DESC, address_hash, scope LIMIT %d OFFSET %d", $per_page, ( $page - 1 ) * $per_page ), ARRAY_A );
		// phpcs:enable
		return compact( 'entries', 'total' );
	}

	/**
	 * Makes the sender's entries here equal to its export: each one added or
	 * updated (and from then on the sender's), and rows gone from it removed:
	 * the sender's rows at once (an operator's `postbag suppression remove`,
	 * an expiry), rows made here once the export is MIRROR_MARGIN newer than
	 * them and their inbox document is not waiting any more (else the sender
	 * may simply not have it yet).
	 *
	 * @param array[]             $entries      The export's `entries`.
	 * @param int                 $generated_at The export's `generated_at` (Unix time); 0 when unknown: no row made here is removed.
	 * @param array<string, true> $waiting      `<hash> <scope>` of additions still waiting in the spool for S3.
	 * @return array{added: int, removed: int, skipped: int} Rows written, removed, and entries not understood.
	 */
	public function mirror( array $entries, int $generated_at = 0, array $waiting = array() ): array {
		global $wpdb;
		$this->ensure();
		$table   = self::table();
		$seen    = array();
		$counts  = array(
			'added'   => 0,
			'removed' => 0,
			'skipped' => 0,
		);
		foreach ( $entries as $entry ) {
			$hash  = is_array( $entry ) ? (string) ( $entry['address_hash'] ?? '' ) : '';
			$scope = is_array( $entry ) ? (string) ( $entry['scope'] ?? '' ) : '';
			$at    = is_array( $entry ) ? strtotime( (string) ( $entry['at'] ?? '' ) ) : false;
			if ( ! preg_match( '/^[0-9a-f]{64}$/', $hash ) || ! self::is_scope( $scope ) || false === $at ) {
				++$counts['skipped']; // One bad entry never stops the others.
				continue;
			}
			$seen[ $hash . ' ' . $scope ] = true;
			$address = is_string( $entry['address'] ?? null ) && self::hash( $entry['address'] ) === $hash ? $entry['address'] : '';
			if ( $this->add( $address, $scope, substr( (string) ( $entry['reason'] ?? 'manual' ), 0, 32 ), substr( (string) ( $entry['source'] ?? 'sender' ), 0, 32 ), $at, self::ORIGIN_SENDER, $hash ) ) {
				++$counts['added'];
			}
		}
		$site_before = gmdate( 'Y-m-d H:i:s', $generated_at - self::MIRROR_MARGIN );
		// phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared -- the table name is fixed.
		foreach ( $wpdb->get_results( $wpdb->prepare( "SELECT address_hash, scope FROM $table WHERE origin = %s OR ( %d > 0 AND created_at < %s )", self::ORIGIN_SENDER, $generated_at, $site_before ), ARRAY_A ) as $row ) {
			$key = $row['address_hash'] . ' ' . $row['scope'];
			if ( ! isset( $seen[ $key ] ) && ! isset( $waiting[ $key ] ) ) {
				$counts['removed'] += $this->remove( $row['address_hash'], $row['scope'] );
			}
		}
		return $counts;
	}

	/**
	 * Installs the table the first time it is needed in a process where it is
	 * missing: a network or a must-use install never ran the activation hook.
	 */
	private function ensure(): void {
		global $wpdb;
		if ( $this->ready ) {
			return;
		}
		if ( self::table() !== $wpdb->get_var( $wpdb->prepare( 'SHOW TABLES LIKE %s', $wpdb->esc_like( self::table() ) ) ) ) {
			self::install();
		}
		$this->ready = true;
	}
}
