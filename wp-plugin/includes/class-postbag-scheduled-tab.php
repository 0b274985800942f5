<?php
/**
 * The Postbag screen's Scheduled tab: what the sender holds for this site, cancelled or moved from here.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * A tab of its own (a site owner looks for "Scheduled", and held mail
 * batches are no notify jobs): Postbag_Console::scheduled(), soonest first,
 * times in the site's time zone with UTC in each `<time>`'s title and
 * datetime. Its two actions post to admin-post.php through Postbag_Screen
 * (capability, nonce, then handle()) and call the service methods the REST
 * routes call (Postbag_Console::cancel_scheduled() and reschedule()); a
 * refused time comes back as the screen's error notice naming the field.
 *
 * Stable ids (documented with the screen's): table `postbag-scheduled-table`,
 * rows `.postbag-scheduled-row` (`data-kind` job|batch, `data-id`,
 * `data-state` scheduled|due|moved|cancel_requested|cancelled), cells
 * `.postbag-scheduled-when` (a `<time>`), `.postbag-scheduled-window`,
 * `.postbag-scheduled-state`; per open row the buttons
 * `postbag-scheduled-cancel-<kind>-<id>` and the reschedule form
 * `postbag-reschedule-<kind>-<id>` (inputs `postbag-send-at-<kind>-<id>`,
 * for jobs `postbag-window-start-<kind>-<id>` / `postbag-window-end-<kind>-<id>`,
 * button `postbag-reschedule-submit-<kind>-<id>`).
 */
final class Postbag_Scheduled_Tab {

	/** States the sender may still act on: a due one may be too late, and the sender says so. */
	const OPEN = array( 'scheduled', 'moved', 'due' );

	/** @var Postbag_Console */
	private $console;

	/**
	 * @param Postbag_Console $console The service.
	 */
	public function __construct( Postbag_Console $console ) {
		$this->console = $console;
	}

	/**
	 * @param string $state A Postbag_Console::scheduled() state.
	 */
	public static function state_label( string $state ): string {
		$labels = array(
			'scheduled'        => __( 'Scheduled', 'postbag' ),
			'due'              => __( 'Due: the sender has released it', 'postbag' ),
			'moved'            => __( 'Moved', 'postbag' ),
			'cancel_requested' => __( 'Cancel requested', 'postbag' ),
			'cancelled'        => __( 'Cancelled', 'postbag' ),
		);
		return $labels[ $state ] ?? $state;
	}

	public function render(): void {
		$entries = $this->console->scheduled();
		echo '<h2 id="postbag-scheduled-heading">' . esc_html__( 'Scheduled mail', 'postbag' ) . '</h2>';
		/* translators: %s: time zone name */
		echo '<p class="description">' . esc_html( sprintf( __( 'Held by the sender on AWS until their time, so nothing depends on visits to this site. Times in the site\'s time zone (%s); hover a time for UTC.', 'postbag' ), wp_timezone_string() ) ) . '</p>';
		echo '<table class="widefat striped" id="postbag-scheduled-table" aria-labelledby="postbag-scheduled-heading"><thead><tr>';
		foreach ( array( __( 'Kind', 'postbag' ), __( 'What', 'postbag' ), __( 'Send time', 'postbag' ), __( 'Window', 'postbag' ), __( 'State', 'postbag' ), __( 'Actions', 'postbag' ) ) as $heading ) {
			echo '<th scope="col">' . esc_html( $heading ) . '</th>';
		}
		echo '</tr></thead><tbody>';
		if ( ! $entries ) {
			echo '<tr><td colspan="6">' . esc_html__( 'Nothing scheduled.', 'postbag' ) . '</td></tr>';
		}
		foreach ( $entries as $entry ) {
			$this->render_row( $entry );
		}
		echo '</tbody></table>';
	}

	/**
	 * @param array $entry Postbag_Console::scheduled() entry.
	 */
	private function render_row( array $entry ): void {
		$what = self::what( $entry );
		printf(
			'<tr class="postbag-scheduled-row" data-kind="%1$s" data-id="%2$s" data-state="%3$s"><td>%4$s</td><td>%5$s<br><span class="description">%6$s</span></td>',
			esc_attr( $entry['kind'] ),
			esc_attr( $entry['id'] ),
			esc_attr( $entry['state'] ),
			esc_html( 'job' === $entry['kind'] ? __( 'Notification job', 'postbag' ) : __( 'Mail batch', 'postbag' ) ),
			esc_html( $what ),
			/* translators: %d: mails */
			esc_html( 'batch' === $entry['kind'] ? sprintf( _n( '%d mail', '%d mails', (int) $entry['mails'], 'postbag' ), (int) $entry['mails'] ) . ( '' === $entry['recipients'] ? '' : ', ' . $entry['recipients'] ) : $entry['recipients'] )
		);
		$window = $entry['send_between'];
		echo '<td class="postbag-scheduled-when">' . ( null === $entry['send_at'] ? ( null === $window ? esc_html__( 'Now', 'postbag' ) : self::time( $window['start'] ) ) : self::time( $entry['send_at'] ) ) . '</td>'; // phpcs:ignore WordPress.Security.EscapeOutput -- time() escapes.
		echo '<td class="postbag-scheduled-window">' . ( null === $window ? '—' : self::time( $window['start'] ) . ' – ' . self::time( $window['end'] ) ) . '</td>'; // phpcs:ignore WordPress.Security.EscapeOutput -- time() escapes.
		echo '<td class="postbag-scheduled-state"><strong>' . esc_html( self::state_label( $entry['state'] ) ) . '</strong>';
		if ( '' !== $entry['log_reason'] ) {
			echo '<br>' . esc_html( $entry['log_reason'] );
		}
		if ( null !== $entry['request'] ) {
			/* translators: 1: attempts, 2: error */
			echo '<br>' . esc_html( sprintf( __( 'Request waiting for S3 (%1$d attempt(s)): %2$s', 'postbag' ), (int) ( $entry['request']['attempts'] ?? 0 ), (string) ( $entry['request']['last_error'] ?? '' ) ) );
		}
		echo '</td><td>';
		if ( in_array( $entry['state'], self::OPEN, true ) ) {
			$this->render_actions( $entry, $what );
		}
		echo '</td></tr>';
	}

	/**
	 * Cancel, and a reschedule form whose inputs are read in the site's time zone.
	 *
	 * @param array  $entry An open entry.
	 * @param string $what  Its name for the labels.
	 */
	private function render_actions( array $entry, string $what ): void {
		$key = $entry['kind'] . '-' . $entry['id'];
		echo '<form method="post" class="postbag-action" action="' . esc_url( admin_url( 'admin-post.php' ) ) . '">';
		Postbag_Screen::hidden_fields( 'sched_cancel' );
		self::target_fields( $entry );
		/* translators: %s: subject or id */
		printf( '<button type="submit" class="button postbag-scheduled-cancel" id="postbag-scheduled-cancel-%1$s" aria-label="%2$s">%3$s</button></form>', esc_attr( $key ), esc_attr( sprintf( __( 'Cancel %s', 'postbag' ), $what ) ), esc_html__( 'Cancel', 'postbag' ) );
		echo '<form method="post" class="postbag-scheduled-reschedule" id="postbag-reschedule-' . esc_attr( $key ) . '" action="' . esc_url( admin_url( 'admin-post.php' ) ) . '">';
		Postbag_Screen::hidden_fields( 'reschedule' );
		self::target_fields( $entry );
		self::input( 'send_at', 'postbag-send-at-' . $key, __( 'New send time', 'postbag' ), $entry['send_at'] );
		if ( 'job' === $entry['kind'] ) {
			echo '<fieldset><legend>' . esc_html__( 'Or spread it over a window', 'postbag' ) . '</legend>';
			self::input( 'window_start', 'postbag-window-start-' . $key, __( 'Start', 'postbag' ), $entry['send_between']['start'] ?? null );
			self::input( 'window_end', 'postbag-window-end-' . $key, __( 'End', 'postbag' ), $entry['send_between']['end'] ?? null );
			echo '</fieldset>';
		}
		/* translators: %s: subject or id */
		printf( '<button type="submit" class="button" id="postbag-reschedule-submit-%1$s" aria-label="%2$s">%3$s</button></form>', esc_attr( $key ), esc_attr( sprintf( __( 'Reschedule %s', 'postbag' ), $what ) ), esc_html__( 'Reschedule', 'postbag' ) );
	}

	/**
	 * admin-post.php, after Postbag_Screen checked the capability and the nonce.
	 *
	 * @param string $do 'sched_cancel' or 'reschedule'.
	 * @return array{0: string, 1: string} Notice type and text.
	 */
	public function handle( string $do ): array {
		// phpcs:disable WordPress.Security.NonceVerification.Missing -- Postbag_Screen::handle_action() checked it.
		$kind = isset( $_POST['kind'] ) && 'job' === $_POST['kind'] ? 'job' : 'batch';
		$id   = isset( $_POST['id'] ) ? sanitize_text_field( wp_unslash( $_POST['id'] ) ) : '';
		if ( 'sched_cancel' === $do ) {
			return self::outcome( $this->console->cancel_scheduled( $kind, $id ), __( 'Cancel requested: the sender confirms it in the State column once the email log is synced.', 'postbag' ) );
		}
		$read = static function ( string $name ): string {
			return isset( $_POST[ $name ] ) ? trim( sanitize_text_field( wp_unslash( $_POST[ $name ] ) ) ) : '';
		};
		// phpcs:enable
		$start = $read( 'window_start' );
		$end   = $read( 'window_end' );
		$when  = '' === $start && '' === $end ? array( 'send_at' => $read( 'send_at' ) ) : array( 'send_between' => array( $start, $end ) );
		if ( array( 'send_at' => '' ) === $when ) {
			$error = new WP_Error( 'postbag_invalid_time', __( 'Choose a new send time, or a window.', 'postbag' ), array( 'field' => 'send_at' ) );
		} else {
			$error = $this->console->reschedule( $kind, $id, $when );
		}
		return self::outcome( $error, __( 'Reschedule requested: the sender holds it until the new time.', 'postbag' ) );
	}

	/**
	 * @param true|WP_Error $result  What the service said.
	 * @param string        $success Text on success.
	 * @return array{0: string, 1: string}
	 */
	private static function outcome( $result, string $success ): array {
		if ( ! is_wp_error( $result ) ) {
			return array( 'success', $success );
		}
		$field = (string) ( ( (array) $result->get_error_data() )['field'] ?? '' );
		/* translators: 1: error, 2: field */
		return array( 'error', '' === $field ? $result->get_error_message() : sprintf( __( '%1$s (field: %2$s)', 'postbag' ), $result->get_error_message(), $field ) );
	}

	/**
	 * @param array $entry Entry.
	 */
	private static function what( array $entry ): string {
		return '' === $entry['subject'] ? $entry['id'] : $entry['subject'];
	}

	/**
	 * @param array $entry Entry.
	 */
	private static function target_fields( array $entry ): void {
		printf( '<input type="hidden" name="kind" value="%1$s"><input type="hidden" name="id" value="%2$s">', esc_attr( $entry['kind'] ), esc_attr( $entry['id'] ) );
	}

	/**
	 * A labelled `datetime-local` input, filled with a UTC time shown in the site's zone.
	 *
	 * @param string      $name  Field.
	 * @param string      $id    Element id.
	 * @param string      $label Label.
	 * @param string|null $utc   Current value (UTC RFC 3339) or null.
	 */
	private static function input( string $name, string $id, string $label, ?string $utc ): void {
		$value = null === $utc ? '' : wp_date( 'Y-m-d\TH:i', (int) strtotime( $utc ) );
		printf( '<label for="%1$s">%2$s</label> <input type="datetime-local" name="%3$s" id="%1$s" value="%4$s"> ', esc_attr( $id ), esc_html( $label ), esc_attr( $name ), esc_attr( (string) $value ) );
	}

	/**
	 * A UTC time in the site's zone, UTC in its title.
	 *
	 * @param string $utc UTC RFC 3339.
	 */
	private static function time( string $utc ): string {
		$ts = (int) strtotime( $utc );
		return sprintf( '<time datetime="%1$s" title="%2$s">%3$s</time>', esc_attr( $utc ), esc_attr( gmdate( 'Y-m-d H:i:s', $ts ) . ' UTC' ), esc_html( (string) wp_date( 'Y-m-d H:i T', $ts ) ) );
	}
}
