<?php
/**
 * The Email log tab's table.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

require_once ABSPATH . 'wp-admin/includes/class-wp-list-table.php';

/**
 * WP_List_Table over Postbag_Console::log(): search (recipients, subject, a
 * mail or batch id), status filter, date range, paging. Each row links to its
 * detail view. The table has id `postbag-log-table`, rows class
 * `postbag-log-row` and `data-status`.
 */
final class Postbag_Log_Table extends WP_List_Table {

	const PER_PAGE = 20;

	/** @var Postbag_Console */
	private $console;

	/** @var string The screen's URL (the Email log tab). */
	private $base_url;

	/**
	 * @param Postbag_Console $console  The service.
	 * @param string          $base_url The tab's URL.
	 */
	public function __construct( Postbag_Console $console, string $base_url ) {
		parent::__construct(
			array(
				'singular' => 'postbag-mail',
				'plural'   => 'postbag-mails',
				'ajax'     => false,
				'screen'   => 'postbag-log',
			)
		);
		$this->console  = $console;
		$this->base_url = $base_url;
	}

	/**
	 * The filters the request asks for (sanitized; the nonce-free GET of a list view).
	 *
	 * @return array See Postbag_Mail_Log::query().
	 */
	public static function filters(): array {
		// phpcs:disable WordPress.Security.NonceVerification.Recommended -- a read-only view.
		$filters = array();
		$search  = isset( $_GET['s'] ) ? sanitize_text_field( wp_unslash( $_GET['s'] ) ) : '';
		if ( '' !== $search ) {
			$filters['search'] = $search;
		}
		$status = isset( $_GET['status'] ) ? sanitize_key( wp_unslash( $_GET['status'] ) ) : '';
		if ( in_array( $status, Postbag_Mail_Log::STATUSES, true ) ) {
			$filters['status'] = $status;
		}
		foreach ( array(
			'from' => 'after',
			'to'   => 'before',
		) as $field => $filter ) {
			$day = isset( $_GET[ $field ] ) ? sanitize_text_field( wp_unslash( $_GET[ $field ] ) ) : '';
			if ( preg_match( '/^\d{4}-\d{2}-\d{2}$/', $day ) ) {
				// A "to" day is included whole.
				$filters[ $filter ] = (int) strtotime( $day . ' 00:00:00 UTC' ) + ( 'before' === $filter ? DAY_IN_SECONDS : 0 );
			}
		}
		// phpcs:enable
		return $filters;
	}

	public function prepare_items(): void {
		$page                  = $this->get_pagenum();
		$result                = $this->console->log(
			self::filters() + array(
				'page'     => $page,
				'per_page' => self::PER_PAGE,
			)
		);
		$this->items           = $result['rows'];
		$this->_column_headers = array( $this->get_columns(), array(), array() );
		$this->set_pagination_args(
			array(
				'total_items' => $result['total'],
				'per_page'    => self::PER_PAGE,
			)
		);
	}

	public function get_columns() {
		return array(
			'created_at' => __( 'Queued (UTC)', 'postbag' ),
			'recipients' => __( 'To', 'postbag' ),
			'subject'    => __( 'Subject', 'postbag' ),
			'status'     => __( 'Status', 'postbag' ),
			'reason'     => __( 'Reason', 'postbag' ),
		);
	}

	/**
	 * @param array $item A row.
	 */
	public function single_row( $item ) {
		printf( '<tr class="postbag-log-row" data-status="%s" data-id="%d">', esc_attr( $item['status'] ), (int) $item['id'] );
		$this->single_row_columns( $item );
		echo '</tr>';
	}

	/**
	 * @param array  $item        A row.
	 * @param string $column_name Column.
	 */
	public function column_default( $item, $column_name ) {
		return esc_html( (string) ( $item[ $column_name ] ?? '' ) );
	}

	/**
	 * @param array $item A row.
	 */
	public function column_subject( $item ) {
		$label = '' === $item['subject'] ? __( '(no subject)', 'postbag' ) : $item['subject'];
		$kind  = 'job' === $item['kind'] ? ' <span class="postbag-kind">' . esc_html__( '(notify job)', 'postbag' ) . '</span>' : '';
		return sprintf( '<a class="postbag-log-detail-link" href="%s">%s</a>%s', esc_url( add_query_arg( 'entry', (int) $item['id'], $this->base_url ) ), esc_html( $label ), $kind );
	}

	/**
	 * @param array $item A row.
	 */
	public function column_status( $item ) {
		return sprintf( '<span class="postbag-status postbag-status-%1$s">%2$s</span>', esc_attr( $item['status'] ), esc_html( Postbag_Screen::status_label( $item['status'] ) ) );
	}

	public function no_items() {
		esc_html_e( 'No mail logged for this search.', 'postbag' );
	}

	/**
	 * The status and date filters above the table.
	 *
	 * @param string $which 'top' or 'bottom'.
	 */
	protected function extra_tablenav( $which ) {
		if ( 'top' !== $which ) {
			return;
		}
		$filters = self::filters();
		echo '<div class="alignleft actions" id="postbag-log-filters">';
		echo '<label for="postbag-filter-status">' . esc_html__( 'Status', 'postbag' ) . '</label> ';
		echo '<select name="status" id="postbag-filter-status"><option value="">' . esc_html__( 'All', 'postbag' ) . '</option>';
		foreach ( Postbag_Mail_Log::STATUSES as $status ) {
			printf( '<option value="%1$s"%2$s>%3$s</option>', esc_attr( $status ), selected( $filters['status'] ?? '', $status, false ), esc_html( Postbag_Screen::status_label( $status ) ) );
		}
		echo '</select> ';
		foreach ( array(
			'from' => __( 'From', 'postbag' ),
			'to'   => __( 'To', 'postbag' ),
		) as $field => $label ) {
			// phpcs:ignore WordPress.Security.NonceVerification.Recommended -- a read-only view.
			$value = isset( $_GET[ $field ] ) ? sanitize_text_field( wp_unslash( $_GET[ $field ] ) ) : '';
			printf( '<label for="postbag-filter-%1$s">%2$s</label> <input type="date" name="%1$s" id="postbag-filter-%1$s" value="%3$s"> ', esc_attr( $field ), esc_html( $label ), esc_attr( $value ) );
		}
		submit_button( __( 'Filter', 'postbag' ), '', 'postbag-filter', false, array( 'id' => 'postbag-filter-submit' ) );
		echo '</div>';
	}
}
