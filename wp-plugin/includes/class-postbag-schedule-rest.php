<?php
/**
 * REST routes for scheduled jobs and batches: list, reschedule, cancel.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * `postbag/v1`, administrators only (`manage_options`; `manage_network_options`
 * on a network, whose one bucket and spool every site shares):
 *
 * - `GET  scheduled`: Postbag_Schedules::listing();
 * - `POST jobs/<id>/schedule`, `POST batches/<id>/schedule`: body
 *   `{"send_at": …}` (null: now) or, for a job, `{"send_between": [start, end]}`;
 * - `POST batches/<id>/cancel` (a job's cancel is Postbag_Rest's
 *   `POST jobs/<job_id>/cancel`, postbag_cancel_job()).
 *
 * Times are what postbag_notify() takes: wall-clock text in the site's time
 * zone unless it names an offset, or a Unix timestamp. Core answers 401 to a
 * visitor who is not logged in and 403 to a user without the capability; a
 * bad id or time is a 400 whose data's `field` names it, a spool that cannot
 * be written a 503.
 */
final class Postbag_Schedule_Rest {

	const REST_NAMESPACE = 'postbag/v1';

	/** The ids of docs/job-format.md, as a route pattern. */
	const ID = '(?P<id>[A-Za-z0-9][A-Za-z0-9._-]{0,63})';

	/** @var Postbag_Schedules */
	private $schedules;

	/**
	 * @param Postbag_Schedules $schedules What is scheduled.
	 */
	public function __construct( Postbag_Schedules $schedules ) {
		$this->schedules = $schedules;
	}

	public function init(): void {
		add_action( 'rest_api_init', array( $this, 'register' ) );
	}

	public function remove(): void {
		remove_action( 'rest_api_init', array( $this, 'register' ) );
	}

	public function register(): void {
		$this->route( 'scheduled', 'GET', array( $this, 'listing' ) );
		foreach ( array(
			'jobs'    => 'job',
			'batches' => 'batch',
		) as $path => $kind ) {
			$this->route(
				"$path/" . self::ID . '/schedule',
				'POST',
				function ( WP_REST_Request $request ) use ( $kind ) {
					return self::answer( $this->schedules->reschedule( $kind, $request['id'], self::when( $request ) ) );
				}
			);
		}
		$this->route(
			'batches/' . self::ID . '/cancel',
			'POST',
			function ( WP_REST_Request $request ) {
				return self::answer( $this->schedules->cancel_batch( $request['id'] ) );
			}
		);
	}

	public function listing(): WP_REST_Response {
		return new WP_REST_Response( array( 'scheduled' => $this->schedules->listing() ) );
	}

	/**
	 * @param string   $route    Route under the namespace.
	 * @param string   $method   HTTP method.
	 * @param callable $callback Its handler.
	 */
	private function route( string $route, string $method, callable $callback ): void {
		register_rest_route(
			self::REST_NAMESPACE,
			'/' . $route,
			array(
				'methods'             => $method,
				'callback'            => $callback,
				'permission_callback' => array( Postbag_Rest::class, 'allowed' ), // One check for every postbag/v1 route.
			)
		);
	}

	/**
	 * The new time, as sent: only `send_at` and `send_between`, whichever are present.
	 *
	 * @param WP_REST_Request $request The request.
	 */
	private static function when( WP_REST_Request $request ): array {
		$params = $request->get_json_params() ?? $request->get_body_params();
		return array_intersect_key( is_array( $params ) ? $params : array(), array_flip( array( 'send_at', 'send_between' ) ) );
	}

	/**
	 * @param true|WP_Error $result What the schedules said.
	 * @return WP_REST_Response|WP_Error
	 */
	private static function answer( $result ) {
		if ( ! is_wp_error( $result ) ) {
			return new WP_REST_Response( array( 'ok' => true ) );
		}
		$data           = (array) $result->get_error_data();
		$statuses       = array(
			'postbag_spool_unavailable' => 503,
			'postbag_not_scheduled'     => 409,
		);
		$data['status'] = $statuses[ $result->get_error_code() ] ?? 400;
		return new WP_Error( $result->get_error_code(), $result->get_error_message(), $data );
	}
}
