<?php
/**
 * REST routes for administrators: see, add and remove suppressions.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * `postbag/v1/suppressions`, for administrators (`manage_options`;
 * `manage_network_options` on a network, whose sites share the list):
 *
 * - GET: a page of entries, newest first; `search` (part of an address, or a
 *   whole hash), `page`, `per_page` (≤ 100); totals in X-WP-Total and
 *   X-WP-TotalPages like core's collections.
 * - POST: `address`, `scope` (`all`, the default, or `list:<name>`, this
 *   site's list of that name, stored as `list:<site prefix>-<name>`): added
 *   with reason `manual`; 201.
 * - DELETE `/suppressions/<hash>`: every entry of that address hash, or only
 *   `scope`.
 *
 * Each change is written to the local table and spooled for the sender
 * (Postbag_Suppression_Inbox). Authentication is WordPress's (cookie and
 * `X-WP-Nonce`, or an application password); the REST server checks the
 * nonce before permission_callback runs.
 */
final class Postbag_Suppression_Routes {

	const MAX_PER_PAGE = 100;

	/** @var Postbag_Suppressions */
	private $table;

	/** @var Postbag_Suppression_Inbox */
	private $inbox;

	/**
	 * @param Postbag_Suppressions      $table The local list.
	 * @param Postbag_Suppression_Inbox $inbox Spools each change for the sender.
	 */
	public function __construct( Postbag_Suppressions $table, Postbag_Suppression_Inbox $inbox ) {
		$this->table = $table;
		$this->inbox = $inbox;
	}

	public function init(): void {
		add_action( 'rest_api_init', array( $this, 'register' ) );
	}

	public function remove(): void {
		remove_action( 'rest_api_init', array( $this, 'register' ) );
	}

	public function register(): void {
		register_rest_route(
			'postbag/v1',
			'/suppressions',
			array(
				array(
					'methods'             => 'GET',
					'callback'            => array( $this, 'list_entries' ),
					'permission_callback' => array( Postbag_Rest::class, 'allowed' ),
					'args'                => array(
						'search'   => array(
							'type'    => 'string',
							'default' => '',
						),
						'page'     => array(
							'type'    => 'integer',
							'minimum' => 1,
							'default' => 1,
						),
						'per_page' => array(
							'type'    => 'integer',
							'minimum' => 1,
							'maximum' => self::MAX_PER_PAGE,
							'default' => 20,
						),
					),
				),
				array(
					'methods'             => 'POST',
					'callback'            => array( $this, 'add' ),
					'permission_callback' => array( Postbag_Rest::class, 'allowed' ),
					'args'                => array(
						'address' => array(
							'type'     => 'string',
							'required' => true,
						),
						'scope'   => array(
							'type'    => 'string',
							'default' => Postbag_Suppressions::ALL,
						),
					),
				),
			)
		);
		register_rest_route(
			'postbag/v1',
			'/suppressions/(?P<hash>[0-9a-f]{64})',
			array(
				'methods'             => 'DELETE',
				'callback'            => array( $this, 'delete' ),
				'permission_callback' => array( Postbag_Rest::class, 'allowed' ),
				'args'                => array(
					'scope' => array( 'type' => 'string' ),
				),
			)
		);
	}

	/**
	 * @param WP_REST_Request $request The request.
	 */
	public function list_entries( WP_REST_Request $request ): WP_REST_Response {
		$per_page = (int) $request['per_page'];
		$page     = $this->table->page( trim( sanitize_text_field( (string) $request['search'] ) ), (int) $request['page'], $per_page );
		$response = new WP_REST_Response( array_map( array( __CLASS__, 'entry' ), $page['entries'] ) );
		$response->header( 'X-WP-Total', (string) $page['total'] );
		$response->header( 'X-WP-TotalPages', (string) (int) ceil( $page['total'] / $per_page ) );
		return $response;
	}

	/**
	 * @param WP_REST_Request $request The request.
	 * @return WP_REST_Response|WP_Error
	 */
	public function add( WP_REST_Request $request ) {
		$address = Postbag_Suppressions::normalise( (string) $request['address'] );
		$scope   = (string) $request['scope'];
		if ( 0 === strpos( $scope, 'list:' ) ) {
			// This site's list of that name (Postbag_List_Unsubscribe::site_list()), not every site's.
			$scope = Postbag_Suppressions::scope( Postbag_List_Unsubscribe::site_list( substr( $scope, strlen( 'list:' ) ) ) );
		}
		if ( ! is_email( $address ) ) {
			return self::bad( 'address', __( 'address must be a bare e-mail address.', 'postbag' ) );
		}
		if ( ! Postbag_Suppressions::is_scope( $scope ) ) {
			return self::bad( 'scope', __( 'scope must be "all" or "list:<name>" (lower-case letters, digits, - and _).', 'postbag' ) );
		}
		$spooled = $this->change( 'add', $scope, $address );
		if ( is_wp_error( $spooled ) ) {
			return $spooled;
		}
		$entries = wp_list_filter( $this->table->entries( Postbag_Suppressions::hash( $address ) ), array( 'scope' => $scope ) );
		return new WP_REST_Response( self::entry( (array) reset( $entries ) ), 201 );
	}

	/**
	 * @param WP_REST_Request $request The request.
	 * @return WP_REST_Response|WP_Error
	 */
	public function delete( WP_REST_Request $request ) {
		$scope   = null === $request['scope'] ? null : (string) $request['scope'];
		$entries = $this->table->entries( (string) $request['hash'] );
		if ( null !== $scope ) {
			$entries = wp_list_filter( $entries, array( 'scope' => $scope ) );
		}
		if ( ! $entries ) {
			return new WP_Error( 'postbag_not_suppressed', __( 'No such entry in the suppression list.', 'postbag' ), array( 'status' => 404 ) );
		}
		foreach ( $entries as $entry ) {
			if ( '' === $entry['address'] ) {
				// The sender's inbox documents name the address; this entry came with its hash only.
				return new WP_Error( 'postbag_address_unknown', __( 'The site knows this entry by its hash only: remove it with `postbag suppression remove` on the operator side.', 'postbag' ), array( 'status' => 409 ) );
			}
		}
		foreach ( $entries as $entry ) {
			$spooled = $this->change( 'remove', $entry['scope'], $entry['address'] );
			if ( is_wp_error( $spooled ) ) {
				return $spooled;
			}
		}
		return new WP_REST_Response(
			array(
				'deleted' => true,
				'entries' => array_values( array_map( array( __CLASS__, 'entry' ), $entries ) ),
			)
		);
	}

	/**
	 * @param string $action  `add` or `remove`.
	 * @param string $scope   Scope.
	 * @param string $address Address.
	 * @return true|WP_Error
	 */
	private function change( string $action, string $scope, string $address ) {
		try {
			$this->inbox->change( $action, $scope, $address, 'manual' );
		} catch ( Postbag_Spool_Exception $e ) {
			return new WP_Error( 'postbag_spool_unavailable', __( 'Changed on this site, but the change could not be spooled for the sender: check Site Health, then try again.', 'postbag' ), array( 'status' => 503 ) );
		}
		return true;
	}

	/**
	 * @param string $field   The argument at fault.
	 * @param string $message Why.
	 */
	private static function bad( string $field, string $message ): WP_Error {
		return new WP_Error(
			'rest_invalid_param',
			$message,
			array(
				'status' => 400,
				'field'  => $field,
			)
		);
	}

	/**
	 * An entry as the routes answer it (times in RFC 3339 UTC).
	 *
	 * @param array $row A table row.
	 */
	private static function entry( array $row ): array {
		return array(
			'address_hash' => $row['address_hash'],
			'address'      => '' === $row['address'] ? null : $row['address'],
			'scope'        => $row['scope'],
			'reason'       => $row['reason'],
			'source'       => $row['source'],
			'origin'       => $row['origin'],
			'at'           => gmdate( 'Y-m-d\TH:i:s\Z', (int) strtotime( $row['created_at'] . ' UTC' ) ),
		);
	}
}
