<?php
/**
 * When a scheduled job or mail goes out: `send_at` and `send_between`, read as the site means them.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Turns what a caller passes as a time into the UTC RFC 3339 `Z` string the
 * bucket formats carry, or refuses it naming the field:
 *
 * - an int: a Unix timestamp;
 * - a DateTimeInterface: that instant, whatever its zone;
 * - a string with an explicit offset (`Z`, `+02:00`, `CEST`): that instant;
 * - any other string PHP's date parser reads (`2027-03-29 08:00`, `next
 *   monday 08:00`): a wall-clock time in the site's time zone (wp_timezone()),
 *   relative ones counted from the injected clock's now.
 *
 * Wall-clock times the zone's daylight-saving changes make odd are resolved
 * as RFC 5545 (iCalendar) does: a time that does not exist (the hour skipped
 * in spring, Europe/Berlin's 2027-03-28 02:30) is read with the offset in
 * force before the change, so it lands as far past the change as it was
 * meant past its start (03:30 CEST, 01:30Z); a time that happens twice (the
 * hour repeated in autumn, 2027-10-31 02:30) is the first of the two (02:30
 * CEST, 00:30Z).
 *
 * A time in the past means now (null: the sender sends at once); more than
 * MAX_AHEAD ahead is refused, as the sender refuses it.
 */
final class Postbag_Send_Time {

	/** How far ahead a send may be scheduled; the sender refuses further too (docs/job-format.md). */
	const MAX_AHEAD = 90 * DAY_IN_SECONDS;

	/** What the bucket formats hold: UTC, to the second. */
	const FORMAT = 'Y-m-d\TH:i:s\Z';

	/** @var int The last stamp() of this process, in milliseconds: each is later. */
	private static $last_stamp_ms = 0;

	/** @var callable(): int */
	private $clock;

	/** @var DateTimeZone|null Null: wp_timezone() when asked (the blog may change in a request). */
	private $zone;

	/** @var array<string, int> Absolute text already read, by zone and text: a loop of mails repeats one time. */
	private $read = array();

	/** @var array<string, array{0: int, 1: int}> Relative text read, by zone and text: [when read, what it meant]. */
	private $relative = array();

	/**
	 * Seconds relative text (`+1 hour`) keeps the instant it was first read
	 * as: a loop of mails within a request becomes one batch, not one a
	 * second, and a long-running process still follows the clock.
	 */
	const RELATIVE_SECONDS = 60;

	/** Texts remembered at most (a request scheduling mails at many times reads them again). */
	const REMEMBERED = 64;

	/**
	 * @param callable(): int   $clock Current Unix time.
	 * @param DateTimeZone|null $zone  Zone of wall-clock strings; default: the current site's.
	 */
	public function __construct( callable $clock, ?DateTimeZone $zone = null ) {
		$this->clock = $clock;
		$this->zone  = $zone;
	}

	/**
	 * When a request (a cancel, a move, a suppression change) was made, for
	 * the sender to tell which of two is newer: the clock's second and the
	 * real millisecond, later than this process's previous stamp in the same
	 * second, so two requests in one second keep their order.
	 *
	 * @param int $now The clock's Unix time.
	 * @return string RFC 3339 UTC with milliseconds (`2026-11-30T01:02:03.456Z`).
	 */
	public static function stamp( int $now ): string {
		$ms = $now * 1000 + (int) ( fmod( microtime( true ), 1.0 ) * 1000 );
		if ( intdiv( self::$last_stamp_ms, 1000 ) === $now ) {
			$ms = min( max( $ms, self::$last_stamp_ms + 1 ), $now * 1000 + 999 ); // Never the next second.
		}
		self::$last_stamp_ms = $ms;
		return gmdate( 'Y-m-d\TH:i:s', intdiv( $ms, 1000 ) ) . sprintf( '.%03dZ', $ms % 1000 );
	}

	/**
	 * `send_at` and `send_between` of the same call: at most one of them.
	 *
	 * @param mixed $send_at      See at().
	 * @param mixed $send_between See window().
	 * @return array{send_at: ?string, send_between: ?array{start: string, end: string}}
	 * @throws Postbag_Mail_Exception Naming the field at fault.
	 */
	public function schedule( $send_at, $send_between ): array {
		if ( null !== $send_at && null !== $send_between ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_schedule', 'Give send_at or send_between, not both: a job either starts at a time or is spread over a window.', 'send_between' );
		}
		return array(
			'send_at'      => $this->at( $send_at, 'send_at' ),
			'send_between' => $this->window( $send_between, 'send_between' ),
		);
	}

	/**
	 * @param mixed  $value A time (see the class), or null for now.
	 * @param string $field The argument, for errors.
	 * @return string|null UTC RFC 3339, or null for now (absent, or in the past).
	 * @throws Postbag_Mail_Exception For a value that is no time, or too far ahead.
	 */
	public function at( $value, string $field ): ?string {
		if ( null === $value ) {
			return null;
		}
		$time = $this->timestamp( $value, $field );
		$now  = ( $this->clock )();
		$this->not_too_far( $time, $now, $field );
		return $time <= $now ? null : gmdate( self::FORMAT, $time );
	}

	/**
	 * @param mixed  $value array( $start, $end ) or array( 'start' => …, 'end' => … ), or null.
	 * @param string $field The argument, for errors.
	 * @return array{start: string, end: string}|null A start in the past becomes now.
	 * @throws Postbag_Mail_Exception For a malformed window, one that ends before it starts, has ended, or ends too far ahead.
	 */
	public function window( $value, string $field ): ?array {
		if ( null === $value ) {
			return null;
		}
		if ( ! is_array( $value ) || 2 !== count( $value ) || ! ( isset( $value[0], $value[1] ) || isset( $value['start'], $value['end'] ) ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_schedule', sprintf( '%s must be array( $start, $end ).', $field ), $field );
		}
		$start = $this->timestamp( $value[0] ?? $value['start'], "$field.start" );
		$end   = $this->timestamp( $value[1] ?? $value['end'], "$field.end" );
		$now   = ( $this->clock )();
		if ( $end <= $start ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_schedule', sprintf( '%s ends (%s) before it starts (%s).', $field, gmdate( self::FORMAT, $end ), gmdate( self::FORMAT, $start ) ), "$field.end" );
		}
		if ( $end <= $now ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_schedule', sprintf( '%s ended at %s: no mail could go out in it.', $field, gmdate( self::FORMAT, $end ) ), "$field.end" );
		}
		$this->not_too_far( $end, $now, "$field.end" );
		return array(
			'start' => gmdate( self::FORMAT, max( $start, $now ) ),
			'end'   => gmdate( self::FORMAT, $end ),
		);
	}

	/**
	 * @param mixed  $value See the class.
	 * @param string $field For errors.
	 * @throws Postbag_Mail_Exception When it is no time.
	 */
	private function timestamp( $value, string $field ): int {
		if ( is_int( $value ) ) {
			return $value;
		}
		if ( $value instanceof DateTimeInterface ) {
			return $value->getTimestamp();
		}
		if ( ! is_string( $value ) || '' === trim( $value ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_time', sprintf( '%s must be a Unix timestamp, a DateTimeInterface or a date and time as text.', $field ), $field );
		}
		$zone = $this->zone ?? wp_timezone();
		$key  = $zone->getName() . '|' . $value;
		if ( isset( $this->read[ $key ] ) ) {
			return $this->read[ $key ];
		}
		$now = ( $this->clock )();
		if ( isset( $this->relative[ $key ] ) && $now - $this->relative[ $key ][0] < self::RELATIVE_SECONDS ) {
			return $this->relative[ $key ][1];
		}
		$parsed = date_parse( $value );
		if ( $parsed['error_count'] > 0 || $parsed['warning_count'] > 0 || ( false === $parsed['year'] && ! isset( $parsed['relative'] ) && false === $parsed['hour'] ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_time', sprintf( '%s is not a date and time PHP can read: %s.', $field, $value ), $field );
		}
		try {
			if ( ! empty( $parsed['is_localtime'] ) ) {
				return $this->remember( $key, ( new DateTimeImmutable( $value ) )->getTimestamp() ); // Its own offset.
			}
			$wall = ( new DateTimeImmutable( '@' . $now ) )->setTimezone( $zone )->modify( $value );
		} catch ( Exception $e ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_time', sprintf( '%s is not a date and time PHP can read: %s.', $field, $value ), $field );
		}
		if ( false === $wall ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_time', sprintf( '%s is not a date and time PHP can read: %s.', $field, $value ), $field );
		}
		$time = self::first_occurrence( $wall );
		if ( isset( $parsed['relative'] ) ) {
			// Depends on now: kept RELATIVE_SECONDS only.
			if ( count( $this->relative ) >= self::REMEMBERED ) {
				$this->relative = array();
			}
			$this->relative[ $key ] = array( $now, $time );
			return $time;
		}
		return $this->remember( $key, $time );
	}

	/**
	 * @param string $key  Zone and text.
	 * @param int    $time What the text means.
	 */
	private function remember( string $key, int $time ): int {
		if ( count( $this->read ) >= self::REMEMBERED ) {
			$this->read = array();
		}
		return $this->read[ $key ] = $time;
	}

	/**
	 * The first instant whose wall-clock time in `$wall`'s zone is `$wall`'s;
	 * PHP's own instant when there is none (a skipped time: PHP already moved
	 * it past the change, with the offset before it, as RFC 5545 does).
	 *
	 * @param DateTimeImmutable $wall A wall-clock time in the site's zone.
	 */
	private static function first_occurrence( DateTimeImmutable $wall ): int {
		$zone  = $wall->getTimezone();
		$naive = ( new DateTimeImmutable( $wall->format( 'Y-m-d H:i:s' ), new DateTimeZone( 'UTC' ) ) )->getTimestamp();
		$found = array();
		foreach ( $zone->getTransitions( $naive - 2 * DAY_IN_SECONDS, $naive + 2 * DAY_IN_SECONDS ) ?: array() as $transition ) {
			$instant = $naive - (int) $transition['offset'];
			if ( $zone->getOffset( new DateTimeImmutable( '@' . $instant ) ) === (int) $transition['offset'] ) {
				$found[] = $instant;
			}
		}
		return $found ? min( $found ) : $wall->getTimestamp();
	}

	/**
	 * @param int    $time  The time asked for.
	 * @param int    $now   Now.
	 * @param string $field For the error.
	 * @throws Postbag_Mail_Exception When it is more than MAX_AHEAD ahead.
	 */
	private function not_too_far( int $time, int $now, string $field ): void {
		if ( $time > $now + self::MAX_AHEAD ) {
			throw new Postbag_Mail_Exception( 'postbag_too_far_ahead', sprintf( '%s is %s: more than %d days ahead, the longest Postbag holds a send.', $field, gmdate( self::FORMAT, $time ), self::MAX_AHEAD / DAY_IN_SECONDS ), $field );
		}
	}
}
