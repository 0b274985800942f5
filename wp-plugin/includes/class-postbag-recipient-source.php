<?php
/**
 * Reads a notify job's recipients a page at a time.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The three kinds of recipients source, each read from a cursor:
 *
 * - `user_query`: WP_User_Query with the caller's arguments (role, meta,
 *   include...), read by keyset: `ID > cursor ORDER BY ID LIMIT page`, the
 *   condition added through `pre_user_query` so every filter of the query
 *   keeps its meaning. Never OFFSET: each page costs the same however deep,
 *   and a user added or removed meanwhile can neither be skipped nor read twice.
 *   The cursor is the last ID read.
 * - `callback`: a function called by name as `f( $args, $cursor, $limit )`,
 *   returning `array( 'rows' => [...], 'cursor' => next or null when done )`;
 *   it must give the same rows for the same cursor, as a continuation in
 *   another process calls it again from the stored cursor.
 * - `memory`: rows held by the process that queued the job (an array, an
 *   iterable, a Closure returning one); they die with it.
 */
final class Postbag_Recipient_Source {

	/** The WP_User_Query variable that carries the keyset cursor to keyset(). */
	const KEYSET_VAR = 'postbag_after_id';

	/** The users table columns a row needs. */
	const USER_FIELDS = array( 'ID', 'user_email', 'display_name' );

	/**
	 * The next page of a stored source.
	 *
	 * @param array         $source  The job record's `source`.
	 * @param mixed         $cursor  Where the last page ended (null before the first).
	 * @param int           $limit   Most rows wanted.
	 * @param Iterator|null $rows    A memory source's rows, being consumed.
	 * @return array{rows: iterable, cursor: mixed, done: bool}
	 * @throws UnexpectedValueException When a callback answers something else than a page.
	 */
	public static function page( array $source, $cursor, int $limit, ?Iterator $rows = null ): array {
		switch ( $source['kind'] ) {
			case 'user_query':
				return self::users( $source['args'], (int) $cursor, $limit );
			case 'callback':
				return self::call( $source['callback'], $source['args'], $cursor, $limit );
			default:
				return self::take( $rows ?? new EmptyIterator(), (int) $cursor, $limit );
		}
	}

	/**
	 * @param array $query_args WP_User_Query arguments as the caller gave them.
	 * @param int   $after      Last ID read; 0 before the first page.
	 * @param int   $limit      Page size.
	 * @throws RuntimeException When the database answers with an error.
	 */
	public static function users( array $query_args, int $after, int $limit ): array {
		$query = new WP_User_Query(
			array_merge(
				$query_args,
				array(
					'fields'         => self::USER_FIELDS,
					'number'         => $limit,
					'orderby'        => 'ID',
					'order'          => 'ASC',
					'count_total'    => false,
					// WordPress 6.3+ caches query results: a million users would pile up in a non-persistent cache.
					'cache_results'  => false,
					self::KEYSET_VAR => $after,
				)
			)
		);
		if ( '' !== $GLOBALS['wpdb']->last_error ) {
			// No rows because the query failed is not the end of the users: the job waits and retries.
			throw new RuntimeException( sprintf( 'Reading users failed: %s', $GLOBALS['wpdb']->last_error ) );
		}
		$users = $query->get_results();
		$last  = $users ? end( $users ) : null;
		$GLOBALS['wpdb']->flush(); // Its copy of the page (last_result) would outlive the rows until the next query.
		return array(
			'rows'   => self::user_rows( $users ),
			'cursor' => null === $last ? $after : (int) $last->ID,
			'done'   => count( $users ) < $limit,
		);
	}

	/**
	 * Rows made one at a time as they are written: a page is never held twice.
	 *
	 * @param object[] $users Users with ID, user_email, display_name.
	 * @return Generator<int, array>
	 */
	private static function user_rows( array $users ): Generator {
		foreach ( $users as $user ) {
			yield array(
				'email'   => $user->user_email,
				'name'    => $user->display_name,
				'user_id' => (int) $user->ID,
			);
		}
	}

	/**
	 * `pre_user_query`, last of all (PHP_INT_MAX): on Postbag's own queries,
	 * the keyset condition, order and limit, whatever another filter set.
	 *
	 * @param WP_User_Query $query A query about to run.
	 */
	public static function keyset( $query ): void {
		if ( ! $query instanceof WP_User_Query || ! isset( $query->query_vars[ self::KEYSET_VAR ] ) ) {
			return;
		}
		global $wpdb;
		$query->query_where  .= $wpdb->prepare( " AND {$wpdb->users}.ID > %d", $query->query_vars[ self::KEYSET_VAR ] );
		$query->query_orderby = "ORDER BY {$wpdb->users}.ID ASC";
		$query->query_limit   = $wpdb->prepare( 'LIMIT %d', $query->query_vars['number'] );
	}

	/**
	 * @param string $callback Function name.
	 * @param array  $args     Its stored arguments.
	 * @param mixed  $cursor   Stored cursor.
	 * @param int    $limit    Page size asked for.
	 * @throws UnexpectedValueException For an answer that is not a page, or a cursor that does not move.
	 */
	private static function call( string $callback, array $args, $cursor, int $limit ): array {
		if ( ! is_callable( $callback ) ) {
			throw new UnexpectedValueException( sprintf( 'The recipients callback %s is not defined in this request.', $callback ) );
		}
		$page = call_user_func( $callback, $args, $cursor, $limit );
		if ( ! is_array( $page ) || ! array_key_exists( 'rows', $page ) || ! is_iterable( $page['rows'] ) || ! array_key_exists( 'cursor', $page ) ) {
			throw new UnexpectedValueException( sprintf( 'The recipients callback %s must return array( \'rows\' => [...], \'cursor\' => next or null ).', $callback ) );
		}
		$next = $page['cursor'];
		if ( null !== $next && $next === $cursor ) {
			throw new UnexpectedValueException( sprintf( 'The recipients callback %s returned the cursor it was given: it would never end.', $callback ) );
		}
		if ( null !== $next && json_decode( (string) wp_json_encode( $next ), true ) !== $next ) {
			throw new UnexpectedValueException( sprintf( 'The recipients callback %s returned a cursor that does not survive JSON (it is stored between pages).', $callback ) );
		}
		return array(
			'rows'   => $page['rows'],
			'cursor' => $next,
			'done'   => null === $next,
		);
	}

	/**
	 * @param Iterator $rows  The rows, part consumed.
	 * @param int      $taken Rows taken so far.
	 * @param int      $limit Page size.
	 */
	private static function take( Iterator $rows, int $taken, int $limit ): array {
		$page = array();
		while ( count( $page ) < $limit && $rows->valid() ) {
			$row    = $rows->current();
			$page[] = $row instanceof WP_User ? array(
				'email'   => $row->user_email,
				'name'    => $row->display_name,
				'user_id' => $row->ID,
			) : $row;
			$rows->next();
		}
		return array(
			'rows'   => $page,
			'cursor' => $taken + count( $page ),
			'done'   => ! $rows->valid(),
		);
	}

	/**
	 * A memory source as an iterator: an array, any iterable, or what a Closure returns.
	 *
	 * @param iterable|Closure $rows The `recipients` argument.
	 * @throws UnexpectedValueException When a Closure returns no iterable.
	 */
	public static function iterator( $rows ): Iterator {
		if ( $rows instanceof Closure ) {
			$rows = $rows();
			if ( ! is_iterable( $rows ) ) {
				throw new UnexpectedValueException( 'The recipients Closure did not return an iterable.' );
			}
		}
		if ( is_array( $rows ) ) {
			return new ArrayIterator( $rows );
		}
		$iterator = $rows instanceof Iterator ? $rows : new IteratorIterator( $rows );
		$iterator->rewind();
		return $iterator;
	}
}
