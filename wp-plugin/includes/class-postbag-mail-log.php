<?php
/**
 * The email log: one row per mail and per notify job, in the site's database.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Table `{$wpdb->base_prefix}postbag_log` (one for a whole network; each row
 * names its blog), created and upgraded with dbDelta whenever the stored
 * schema version (site option SCHEMA_OPTION) differs from SCHEMA_VERSION.
 * A row holds who a mail was for, its subject and what became of it — never
 * its body or attachments. Rows older than POSTBAG_LOG_DAYS (Postbag_Config
 * `log_days`, default 30) are pruned by the daily PRUNE_HOOK event.
 *
 * Every status change fires `postbag_mail_status_changed( array $row, string $old_status )`.
 *
 * `receipt_key` is the object the row waits on: the batch's receipt, or
 * while a request to the sender is open, its result (`status/control/...`
 * for a held batch's cancel or move, `status/redrive/<uuid>.json` for a
 * resend; Postbag_Log_Sync). `due_at` (UTC, or NULL) is when a held mail's
 * receipt can come at the earliest: the sync does not look before.
 */
final class Postbag_Mail_Log {

	const SCHEMA_VERSION = 3;

	/** Site option holding the schema version the table was last made for. */
	const SCHEMA_OPTION = 'postbag_log_schema';

	const PRUNE_HOOK = 'postbag_prune_log';

	const STATUSES = array( 'queued', 'spooled', 'uploaded', 'scheduled', 'sent', 'failed', 'suppressed', 'bounced', 'complained', 'quarantined', 'cancelled' );

	/** Statuses the sender may still change (the sync reads their receipts or job status). */
	const UNSETTLED = array( 'uploaded', 'scheduled' );

	/** Rows written in one INSERT (~200 KB of SQL): fewer statements cost less (Postbag_Log_Recorder). */
	const INSERT_ROWS = 1000;

	/** Rows read or updated by one statement of set_statuses(). */
	const UPDATE_ROWS = 200;

	/** @var callable(): int */
	private $clock;

	/** @var int Days rows are kept. */
	private $days;

	/**
	 * @param callable|null $clock Returns the Unix time; default time().
	 * @param int           $days  Days rows are kept (POSTBAG_LOG_DAYS).
	 */
	public function __construct( ?callable $clock = null, int $days = 30 ) {
		$this->clock = $clock ?? 'time';
		$this->days  = max( 1, $days );
	}

	public static function table(): string {
		global $wpdb;
		return $wpdb->base_prefix . 'postbag_log';
	}

	/** Creates or upgrades the table when the stored schema version is not this one. */
	public static function maybe_upgrade(): void {
		if ( (int) get_site_option( self::SCHEMA_OPTION, 0 ) !== self::SCHEMA_VERSION ) {
			self::install();
		}
	}

	/** dbDelta adds what is missing (columns, indexes) and never drops anything. */
	public static function install(): void {
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table = self::table();
		// dbDelta's format: two spaces after PRIMARY KEY, one definition a line.
		dbDelta(
			"CREATE TABLE $table (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  kind varchar(8) NOT NULL DEFAULT 'mail',
  mail_id varchar(64) NOT NULL,
  batch_id varchar(128) NOT NULL DEFAULT '',
  blog_id bigint(20) unsigned NOT NULL DEFAULT 0,
  recipients text NOT NULL,
  recipient varchar(191) NOT NULL DEFAULT '',
  subject varchar(255) NOT NULL DEFAULT '',
  status varchar(20) NOT NULL DEFAULT 'queued',
  reason text NULL,
  message_id varchar(255) NOT NULL DEFAULT '',
  receipt_key varchar(255) NOT NULL DEFAULT '',
  counts text NULL,
  due_at datetime NULL,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  PRIMARY KEY  (id),
  UNIQUE KEY mail_id (mail_id),
  KEY status_created (status,created_at),
  KEY created_at (created_at),
  KEY recipient (recipient),
  KEY batch_id (batch_id)
) " . $wpdb->get_charset_collate() . ';'
		);
		update_site_option( self::SCHEMA_OPTION, self::SCHEMA_VERSION );
		self::ensure_daily_prune();
		Postbag_Log_Sync::ensure_scheduled();
	}

	/** Uninstall: the table, its version option and the last sync's time. */
	public static function drop(): void {
		global $wpdb;
		$wpdb->query( 'DROP TABLE IF EXISTS ' . self::table() ); // phpcs:ignore WordPress.DB -- table name is ours.
		delete_site_option( self::SCHEMA_OPTION );
		delete_site_option( Postbag_Log_Sync::SYNCED_OPTION );
	}

	public function init(): void {
		// Also after an update that replaced the files without an activation.
		add_action( 'admin_init', array( self::class, 'maybe_upgrade' ) );
		add_action( self::PRUNE_HOOK, array( $this, 'prune' ), 10, 0 );
	}

	public function remove(): void {
		remove_action( 'admin_init', array( self::class, 'maybe_upgrade' ) );
		remove_action( self::PRUNE_HOOK, array( $this, 'prune' ), 10 );
	}

	/** Deactivation and uninstall (each site's cron). */
	public static function unschedule(): void {
		wp_clear_scheduled_hook( self::PRUNE_HOOK );
		wp_clear_scheduled_hook( Postbag_Log_Sync::HOOK );
	}

	/** Days rows are kept: POSTBAG_LOG_DAYS, at least 1. */
	public function retention_days(): int {
		return $this->days;
	}

	public static function ensure_daily_prune(): void {
		if ( ! wp_next_scheduled( self::PRUNE_HOOK ) ) {
			wp_schedule_event( time() + HOUR_IN_SECONDS, 'daily', self::PRUNE_HOOK );
		}
	}

	/**
	 * Records mails (or jobs) queued now.
	 *
	 * @param array[] $rows Each: `mail_id`, `recipients` (string[]), `subject`; optional `kind`
	 *                      ('mail' or 'job'), `status` (default queued), `reason`, `batch_id`,
	 *                      `receipt_key`, `due_at` (RFC 3339), `blog_id`.
	 */
	public function record_queued( array $rows ): void {
		global $wpdb;
		foreach ( array_chunk( $rows, self::INSERT_ROWS ) as $chunk ) {
			$values = array();
			$args   = array();
			$now    = $this->now();
			foreach ( $chunk as $row ) {
				$recipients = array_values( array_map( 'strval', (array) ( $row['recipients'] ?? array() ) ) );
				$values[]   = "(%s, %s, %s, %d, %s, %s, %s, %s, %s, %s, NULLIF(%s, ''), %s, %s)";
				array_push(
					$args,
					(string) ( $row['kind'] ?? 'mail' ),
					(string) $row['mail_id'],
					(string) ( $row['batch_id'] ?? '' ),
					(int) ( $row['blog_id'] ?? get_current_blog_id() ),
					implode( ', ', $recipients ),
					self::bare_address( $recipients[0] ?? '' ),
					mb_substr( (string) ( $row['subject'] ?? '' ), 0, 255 ),
					(string) ( $row['status'] ?? 'queued' ),
					(string) ( $row['reason'] ?? '' ),
					(string) ( $row['receipt_key'] ?? '' ),
					self::db_time( $row['due_at'] ?? null ),
					$now,
					$now
				);
			}
			// A mail id is recorded once: a replay (the retry of a spooled batch) keeps the first row.
			$wpdb->query( $wpdb->prepare( 'INSERT IGNORE INTO ' . self::table() . ' (kind, mail_id, batch_id, blog_id, recipients, recipient, subject, status, reason, receipt_key, due_at, created_at, updated_at) VALUES ' . implode( ', ', $values ), $args ) ); // phpcs:ignore WordPress.DB
		}
	}

	/**
	 * Changes one row's status.
	 *
	 * @param string $mail_id Mail (or job) id.
	 * @param string $status  One of STATUSES.
	 * @param string $detail  Why (a failure's reason), or ''.
	 * @param array  $fields  Other columns to set: batch_id, message_id, receipt_key, counts (array),
	 *                        due_at (RFC 3339, or null: look at once).
	 * @return bool Whether a row was found.
	 */
	public function set_status( string $mail_id, string $status, string $detail = '', array $fields = array() ): bool {
		return 1 === $this->set_statuses( array( $mail_id ), $status, $detail, $fields );
	}

	/**
	 * Changes the status of many rows at once (a batch's mails): one UPDATE,
	 * then `postbag_mail_status_changed` for each row whose status changed.
	 *
	 * @param string[] $mail_ids Ids.
	 * @param string   $status   One of STATUSES.
	 * @param string   $detail   Reason, or ''.
	 * @param array    $fields   See set_status().
	 * @return int Rows found.
	 * @throws InvalidArgumentException For an unknown status or column.
	 */
	public function set_statuses( array $mail_ids, string $status, string $detail = '', array $fields = array() ): int {
		global $wpdb;
		if ( ! in_array( $status, self::STATUSES, true ) ) {
			throw new InvalidArgumentException( "Unknown mail status: $status" );
		}
		$unknown = array_diff_key( $fields, array_flip( array( 'batch_id', 'message_id', 'receipt_key', 'counts', 'due_at' ) ) );
		if ( $unknown ) {
			throw new InvalidArgumentException( 'Unknown log column: ' . implode( ', ', array_keys( $unknown ) ) );
		}
		if ( isset( $fields['counts'] ) ) {
			$fields['counts'] = wp_json_encode( $fields['counts'] );
		}
		if ( array_key_exists( 'due_at', $fields ) ) {
			$fields['due_at'] = self::db_time( $fields['due_at'] );
		}
		$found = 0;
		foreach ( array_chunk( array_values( array_unique( $mail_ids ) ), self::UPDATE_ROWS ) as $chunk ) {
			$before = $this->rows_by_id( $chunk );
			if ( ! $before ) {
				continue;
			}
			$found += count( $before );
			$set    = array_merge(
				$fields,
				array(
					'status'     => $status,
					'reason'     => $detail,
					'updated_at' => $this->now(),
				)
			);
			$assign = implode( ', ', array_map( static fn( $column ) => 'due_at' === $column ? "due_at = NULLIF(%s, '')" : "$column = %s", array_keys( $set ) ) );
			$in     = implode( ', ', array_fill( 0, count( $before ), '%s' ) );
			$wpdb->query( $wpdb->prepare( 'UPDATE ' . self::table() . " SET $assign WHERE mail_id IN ($in)", array_merge( array_values( $set ), array_keys( $before ) ) ) ); // phpcs:ignore WordPress.DB
			$this->announce( $before, $set );
		}
		return $found;
	}

	/**
	 * Marks rows as looked at now, status unchanged: the sync reads the
	 * longest-untouched receipts first, so one that never comes cannot
	 * starve the others.
	 *
	 * @param string[] $mail_ids Ids.
	 */
	public function touch( array $mail_ids ): void {
		global $wpdb;
		foreach ( array_chunk( array_values( $mail_ids ), self::UPDATE_ROWS ) as $chunk ) {
			$in = implode( ', ', array_fill( 0, count( $chunk ), '%s' ) );
			$wpdb->query( $wpdb->prepare( 'UPDATE ' . self::table() . " SET updated_at = %s WHERE mail_id IN ($in)", array_merge( array( $this->now() ), $chunk ) ) ); // phpcs:ignore WordPress.DB
		}
	}

	/**
	 * @param array<string, array> $before Mail id => row before the change.
	 * @param array                $set    Columns set.
	 */
	private function announce( array $before, array $set ): void {
		if ( ! has_action( 'postbag_mail_status_changed' ) ) {
			return; // A batch of 25 rows, and nobody listening: skip building them.
		}
		foreach ( $before as $row ) {
			if ( $row['status'] === $set['status'] ) {
				continue;
			}
			/**
			 * Fires when a log row's status changed.
			 *
			 * @param array  $row        The row after the change, as get() answers it.
			 * @param string $old_status Its status before.
			 */
			do_action( 'postbag_mail_status_changed', self::decode( array_merge( $row, $set ) ), (string) $row['status'] );
		}
	}

	/**
	 * @param string[] $mail_ids Ids (at most UPDATE_ROWS).
	 * @return array<string, array> Mail id => row, for those found.
	 */
	private function rows_by_id( array $mail_ids ): array {
		global $wpdb;
		$in   = implode( ', ', array_fill( 0, count( $mail_ids ), '%s' ) );
		$rows = $wpdb->get_results( $wpdb->prepare( 'SELECT * FROM ' . self::table() . " WHERE mail_id IN ($in)", $mail_ids ), ARRAY_A ); // phpcs:ignore WordPress.DB
		return array_column( (array) $rows, null, 'mail_id' );
	}

	/**
	 * One row by its log id or mail id.
	 *
	 * @param int|string $id Numeric log id, or a mail / job id.
	 */
	public function get( $id ): ?array {
		global $wpdb;
		$column = is_int( $id ) ? 'id' : 'mail_id';
		$row    = $wpdb->get_row( $wpdb->prepare( 'SELECT * FROM ' . self::table() . " WHERE $column = %s", (string) $id ), ARRAY_A ); // phpcs:ignore WordPress.DB
		return is_array( $row ) ? self::decode( $row ) : null;
	}

	/**
	 * Rows matching a search, newest first.
	 *
	 * @param array $filters `search` (recipients or subject), `status`, `kind`, `recipient`, `subject`,
	 *                       `after`, `before` (Unix times), `blog_id`, `page` (from 1), `per_page`.
	 * @return array{rows: array[], total: int}
	 */
	public function query( array $filters ): array {
		global $wpdb;
		list( $where, $args ) = self::where( $filters );
		$per_page             = min( 200, max( 1, (int) ( $filters['per_page'] ?? 20 ) ) );
		$offset               = ( max( 1, (int) ( $filters['page'] ?? 1 ) ) - 1 ) * $per_page;
		$table                = self::table();
		$total                = (int) $wpdb->get_var( $args ? $wpdb->prepare( "SELECT COUNT(*) FROM $table WHERE $where", $args ) : "SELECT COUNT(*) FROM $table WHERE $where" ); // phpcs:ignore WordPress.DB
		$rows                 = $wpdb->get_results( $wpdb->prepare( "SELECT * FROM $table WHERE $where ORDER BY created_at DESC, id DESC LIMIT %d OFFSET %d", array_merge( $args, array( $per_page, $offset ) ) ), ARRAY_A ); // phpcs:ignore WordPress.DB
		return array(
			'rows'  => array_map( array( self::class, 'decode' ), (array) $rows ),
			'total' => $total,
		);
	}

	/**
	 * @param array $filters See query().
	 * @return array{0: string, 1: array} SQL condition and its arguments.
	 */
	private static function where( array $filters ): array {
		global $wpdb;
		$where = array( '1=1' );
		$args  = array();
		foreach ( array( 'status', 'kind', 'batch_id' ) as $exact ) {
			if ( isset( $filters[ $exact ] ) && '' !== $filters[ $exact ] ) {
				$where[] = "$exact = %s";
				$args[]  = (string) $filters[ $exact ];
			}
		}
		if ( isset( $filters['blog_id'] ) ) {
			$where[] = 'blog_id = %d';
			$args[]  = (int) $filters['blog_id'];
		}
		$likes = array(
			'recipient' => 'recipients',
			'subject'   => 'subject',
		);
		foreach ( $likes as $filter => $column ) {
			if ( isset( $filters[ $filter ] ) && '' !== $filters[ $filter ] ) {
				$where[] = "$column LIKE %s";
				$args[]  = '%' . $wpdb->esc_like( (string) $filters[ $filter ] ) . '%';
			}
		}
		if ( isset( $filters['search'] ) && '' !== $filters['search'] ) {
			$like    = '%' . $wpdb->esc_like( (string) $filters['search'] ) . '%';
			$where[] = '(recipients LIKE %s OR subject LIKE %s OR mail_id = %s OR batch_id = %s)';
			array_push( $args, $like, $like, (string) $filters['search'], (string) $filters['search'] );
		}
		foreach ( array(
			'after'  => '>=',
			'before' => '<',
		) as $filter => $op ) {
			if ( ! empty( $filters[ $filter ] ) ) {
				$where[] = "created_at $op %s";
				$args[]  = gmdate( 'Y-m-d H:i:s', (int) $filters[ $filter ] );
			}
		}
		return array( implode( ' AND ', $where ), $args );
	}

	/**
	 * Mails by status since a time (jobs are counted by their recipients' counts, see jobs()).
	 *
	 * @param int $since Unix time.
	 * @return array<string, int> Every status => mails created since then.
	 */
	public function counts( int $since ): array {
		global $wpdb;
		$rows   = $wpdb->get_results( $wpdb->prepare( 'SELECT status, COUNT(*) AS n FROM ' . self::table() . " WHERE kind = 'mail' AND created_at >= %s GROUP BY status", gmdate( 'Y-m-d H:i:s', $since ) ), ARRAY_A ); // phpcs:ignore WordPress.DB
		$counts = array_fill_keys( self::STATUSES, 0 );
		foreach ( (array) $rows as $row ) {
			$counts[ $row['status'] ] = (int) $row['n'];
		}
		return $counts;
	}

	/**
	 * Rows whose outcome the sender may still change and may have written
	 * now (a held mail's not before its `due_at`), the longest untouched first.
	 *
	 * @param string $kind  'mail' or 'job'.
	 * @param int    $limit At most this many.
	 * @return array[]
	 */
	public function unsettled( string $kind, int $limit ): array {
		global $wpdb;
		$in   = implode( ', ', array_fill( 0, count( self::UNSETTLED ), '%s' ) );
		$rows = $wpdb->get_results( $wpdb->prepare( 'SELECT * FROM ' . self::table() . " WHERE kind = %s AND status IN ($in) AND ( due_at IS NULL OR due_at <= %s ) ORDER BY updated_at ASC LIMIT %d", array_merge( array( $kind ), self::UNSETTLED, array( $this->now(), $limit ) ) ), ARRAY_A ); // phpcs:ignore WordPress.DB
		return array_map( array( self::class, 'decode' ), (array) $rows );
	}

	/**
	 * Mails uploaded (or due, when held) before `$before` whose receipt has
	 * not come: the sender is not deployed, not wired, or failing.
	 *
	 * @param int $before Unix time.
	 */
	public function unreceipted( int $before ): int {
		global $wpdb;
		return (int) $wpdb->get_var( $wpdb->prepare( 'SELECT COUNT(*) FROM ' . self::table() . " WHERE kind = 'mail' AND status = 'uploaded' AND COALESCE(due_at, created_at) < %s", gmdate( 'Y-m-d H:i:s', $before ) ) ); // phpcs:ignore WordPress.DB
	}

	/**
	 * SES feedback about an address: its latest mail sent before the event
	 * becomes bounced or complained. Once: a later export with the same entry
	 * finds that mail marked already, and leaves the earlier ones alone.
	 *
	 * @param string $address The recipient, as the export has it.
	 * @param string $at      When SES reported it (RFC 3339).
	 * @param string $status  'bounced' or 'complained'.
	 * @param string $reason  Why.
	 * @return bool Whether a row was marked.
	 */
	public function mark_feedback( string $address, string $at, string $status, string $reason ): bool {
		global $wpdb;
		$when = self::db_time( $at );
		if ( '' === $when ) {
			return false;
		}
		$row = $wpdb->get_row( $wpdb->prepare( 'SELECT mail_id, status FROM ' . self::table() . " WHERE recipient = %s AND kind = 'mail' AND status IN ('sent', 'bounced', 'complained') AND created_at <= %s ORDER BY created_at DESC, id DESC LIMIT 1", self::bare_address( $address ), $when ), ARRAY_A ); // phpcs:ignore WordPress.DB
		if ( ! is_array( $row ) || 'sent' !== $row['status'] ) {
			return false;
		}
		return $this->set_status( $row['mail_id'], $status, $reason );
	}

	/**
	 * Deletes rows older than the retention (the daily event).
	 *
	 * @param int|null $days Default: POSTBAG_LOG_DAYS.
	 * @return int Rows deleted.
	 */
	public function prune( ?int $days = null ): int {
		global $wpdb;
		$cutoff = gmdate( 'Y-m-d H:i:s', ( $this->clock )() - DAY_IN_SECONDS * ( $days ?? $this->days ) );
		return (int) $wpdb->query( $wpdb->prepare( 'DELETE FROM ' . self::table() . ' WHERE created_at < %s', $cutoff ) ); // phpcs:ignore WordPress.DB
	}

	/**
	 * @param array $row A row as stored.
	 * @return array Typed: ids as ints, counts decoded, times in RFC 3339 UTC.
	 */
	public static function decode( array $row ): array {
		$row['id']         = (int) $row['id'];
		$row['blog_id']    = (int) $row['blog_id'];
		$row['counts']     = null === $row['counts'] || '' === $row['counts'] ? null : json_decode( $row['counts'], true );
		$row['reason']     = (string) $row['reason'];
		$row['created_at'] = str_replace( ' ', 'T', $row['created_at'] ) . 'Z';
		$row['updated_at'] = str_replace( ' ', 'T', $row['updated_at'] ) . 'Z';
		$row['due_at']     = empty( $row['due_at'] ) ? null : str_replace( ' ', 'T', $row['due_at'] ) . 'Z';
		return $row;
	}

	/**
	 * The address in `Name <address>`, lower-cased, for the recipient index.
	 *
	 * @param string $mailbox A mailbox as given.
	 */
	private static function bare_address( string $mailbox ): string {
		if ( preg_match( '/<([^<>]*)>\s*$/', $mailbox, $m ) ) {
			$mailbox = $m[1];
		}
		return mb_substr( strtolower( trim( $mailbox ) ), 0, 191 );
	}

	private function now(): string {
		return gmdate( 'Y-m-d H:i:s', ( $this->clock )() );
	}

	/**
	 * @param string|null $time RFC 3339, or null.
	 * @return string The DATETIME column's text, or '' for NULL (the SQL's NULLIF).
	 */
	private static function db_time( ?string $time ): string {
		$unix = null === $time ? false : strtotime( $time );
		return false === $unix ? '' : gmdate( 'Y-m-d H:i:s', $unix );
	}
}
