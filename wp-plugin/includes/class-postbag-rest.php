<?php
/**
 * The console's REST API.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * `postbag/v1`, administrators only (`manage_options`; `manage_network_options`
 * on a network), each route a thin call of Postbag_Console:
 *
 *     GET  status                 configuration, SES account, counts, running jobs
 *     GET  log                    search, status, kind, recipient, subject, after, before (RFC 3339), page, per_page
 *     GET  log/<id>               one row
 *     POST log/<id>/resend        requests/redrive/<uuid>.json for a failed mail or job
 *     GET  jobs                   notify jobs
 *     POST jobs/<job_id>/cancel
 *     POST test                   `to` (default: the admin address); answers the queued mail's row
 *     POST spool/retry
 *     POST sync                   read the sender's receipts and job documents now
 *
 * Collections answer X-WP-Total and X-WP-TotalPages like core's.
 */
final class Postbag_Rest {

	const NAMESPACE = 'postbag/v1';

	/** @var Postbag_Console */
	private $console;

	/**
	 * @param Postbag_Console $console The service.
	 */
	public function __construct( Postbag_Console $console ) {
		$this->console = $console;
	}

	public function init(): void {
		add_action( 'rest_api_init', array( $this, 'register' ) );
	}

	public function remove(): void {
		remove_action( 'rest_api_init', array( $this, 'register' ) );
	}

	/** The capability the console needs here: a network's settings are the network admin's. */
	public static function capability(): string {
		return is_multisite() ? 'manage_network_options' : 'manage_options';
	}

	/**
	 * @return true|WP_Error
	 */
	public static function allowed() {
		if ( current_user_can( self::capability() ) ) {
			return true;
		}
		return new WP_Error( 'rest_forbidden', __( 'Only administrators may use Postbag.', 'postbag' ), array( 'status' => rest_authorization_required_code() ) );
	}

	public function register(): void {
		$routes = array(
			'/status'                                        => array( 'GET', 'status', array() ),
			'/log'                                           => array( 'GET', 'log', self::log_args() ),
			'/log/(?P<id>\d+)'                               => array( 'GET', 'entry', array() ),
			'/log/(?P<id>\d+)/resend'                        => array( 'POST', 'resend', array() ),
			'/jobs'                                          => array( 'GET', 'jobs', self::page_args() ),
			'/jobs/(?P<job_id>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/cancel' => array( 'POST', 'cancel', array() ),
			'/test'                                          => array(
				'POST',
				'test',
				array(
					'to' => array(
						'type'    => 'string',
						'default' => '',
					),
				),
			),
			'/spool/retry'                                   => array( 'POST', 'retry', array() ),
			'/sync'                                          => array( 'POST', 'sync', array() ),
		);
		foreach ( $routes as $route => list( $method, $callback, $args ) ) {
			register_rest_route(
				self::NAMESPACE,
				$route,
				array(
					'methods'             => $method,
					'callback'            => array( $this, $callback ),
					'permission_callback' => array( __CLASS__, 'allowed' ),
					'args'                => $args,
				)
			);
		}
	}

	private static function page_args(): array {
		return array(
			'page'     => array(
				'type'    => 'integer',
				'minimum' => 1,
				'default' => 1,
			),
			'per_page' => array(
				'type'    => 'integer',
				'minimum' => 1,
				'maximum' => 200,
				'default' => 20,
			),
		);
	}

	private static function log_args(): array {
		$args = self::page_args();
		foreach ( array( 'search', 'recipient', 'subject' ) as $name ) {
			$args[ $name ] = array(
				'type'    => 'string',
				'default' => '',
			);
		}
		$args['status'] = array(
			'type' => 'string',
			'enum' => Postbag_Mail_Log::STATUSES,
		);
		$args['kind']   = array(
			'type' => 'string',
			'enum' => array( 'mail', 'job' ),
		);
		foreach ( array( 'after', 'before' ) as $name ) {
			$args[ $name ] = array(
				'type'   => 'string',
				'format' => 'date-time',
			);
		}
		return $args;
	}

	public function status(): WP_REST_Response {
		return new WP_REST_Response( $this->console->status() );
	}

	/**
	 * @param WP_REST_Request $request Filters.
	 */
	public function log( WP_REST_Request $request ): WP_REST_Response {
		$filters = array();
		foreach ( array( 'search', 'recipient', 'subject', 'status', 'kind', 'page', 'per_page' ) as $name ) {
			if ( null !== $request[ $name ] ) {
				$filters[ $name ] = $request[ $name ];
			}
		}
		foreach ( array( 'after', 'before' ) as $name ) {
			if ( null !== $request[ $name ] ) {
				$filters[ $name ] = (int) strtotime( (string) $request[ $name ] );
			}
		}
		return self::collection( $this->console->log( $filters ), (int) $request['per_page'] );
	}

	/**
	 * @param WP_REST_Request $request With `id`.
	 * @return WP_REST_Response|WP_Error
	 */
	public function entry( WP_REST_Request $request ) {
		$row = $this->console->entry( (int) $request['id'] );
		return null === $row ? new WP_Error( 'postbag_not_found', __( 'No such log entry.', 'postbag' ), array( 'status' => 404 ) ) : new WP_REST_Response( $row );
	}

	/**
	 * @param WP_REST_Request $request With `id`.
	 * @return WP_REST_Response|WP_Error
	 */
	public function resend( WP_REST_Request $request ) {
		return rest_ensure_response( $this->console->resend( (int) $request['id'] ) );
	}

	/**
	 * @param WP_REST_Request $request Paging.
	 */
	public function jobs( WP_REST_Request $request ): WP_REST_Response {
		return self::collection( $this->console->jobs( (int) $request['page'], (int) $request['per_page'] ), (int) $request['per_page'] );
	}

	/**
	 * @param WP_REST_Request $request With `job_id`.
	 * @return WP_REST_Response|WP_Error
	 */
	public function cancel( WP_REST_Request $request ) {
		$result = $this->console->cancel_job( (string) $request['job_id'] );
		if ( is_wp_error( $result ) ) {
			$result->add_data( array_merge( (array) $result->get_error_data(), array( 'status' => 400 ) ) );
			return $result;
		}
		return new WP_REST_Response( array( 'cancelled' => true ) );
	}

	/**
	 * @param WP_REST_Request $request With `to`.
	 * @return WP_REST_Response|WP_Error
	 */
	public function test( WP_REST_Request $request ) {
		$row = $this->console->send_test( sanitize_email( (string) $request['to'] ) === (string) $request['to'] ? (string) $request['to'] : 'invalid' );
		return is_wp_error( $row ) ? $row : new WP_REST_Response( $row, 202 );
	}

	public function retry(): WP_REST_Response {
		return new WP_REST_Response( $this->console->retry_spool() );
	}

	public function sync(): WP_REST_Response {
		return new WP_REST_Response( $this->console->sync() );
	}

	/**
	 * @param array{rows: array[], total: int} $page     Rows and total.
	 * @param int                              $per_page Page size.
	 */
	private static function collection( array $page, int $per_page ): WP_REST_Response {
		$response = new WP_REST_Response( $page['rows'] );
		$response->header( 'X-WP-Total', (string) $page['total'] );
		$response->header( 'X-WP-TotalPages', (string) (int) ceil( $page['total'] / max( 1, $per_page ) ) );
		return $response;
	}
}
