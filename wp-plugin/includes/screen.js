/**
 * The Postbag screen's two live parts (Postbag_Screen): the test mail's status,
 * read until it settles, and the Suppressions tab. Plain JavaScript over
 * wp.apiFetch, which sends core's wp_rest nonce.
 */
( function () {
	'use strict';
	var apiFetch = window.wp && window.wp.apiFetch;
	if ( ! apiFetch ) {
		return;
	}
	var SETTLED = [ 'sent', 'failed', 'suppressed', 'bounced', 'complained', 'quarantined', 'cancelled' ];

	function text( node, value ) {
		node.textContent = value;
	}

	/** Polls the test mail: a sync, then its row, every 5 s for at most 10 minutes. */
	function watchTest( status ) {
		var id = parseInt( status.getAttribute( 'data-id' ), 10 );
		var rounds = 0;
		if ( ! id || SETTLED.indexOf( status.getAttribute( 'data-status' ) ) !== -1 ) {
			return;
		}
		function poll() {
			rounds++;
			apiFetch( { path: '/postbag/v1/sync', method: 'POST' } )
				.catch( function () {} )
				.then( function () {
					return apiFetch( { path: '/postbag/v1/log/' + id } );
				} )
				.then( function ( row ) {
					if ( row.status !== status.getAttribute( 'data-status' ) ) {
						status.setAttribute( 'data-status', row.status );
						text( status, 'Test mail: ' + row.status + ( row.reason ? ' — ' + row.reason : '' ) + ( row.message_id ? ' (SES message id ' + row.message_id + ')' : '' ) );
					}
					if ( SETTLED.indexOf( row.status ) === -1 && rounds < 120 ) {
						window.setTimeout( poll, 5000 );
					}
				} )
				.catch( function ( error ) {
					text( status, 'Could not read the test mail\'s status: ' + ( error.message || error.code ) );
				} );
		}
		window.setTimeout( poll, 2000 );
	}

	function suppressions( root ) {
		var body = root.querySelector( '#postbag-suppression-list tbody' );
		var live = root.querySelector( '#postbag-suppression-status' );
		function cell( row, value ) {
			var td = document.createElement( 'td' );
			text( td, value || '' );
			row.appendChild( td );
		}
		function load() {
			apiFetch( { path: '/postbag/v1/suppressions?per_page=100' } ).then( function ( entries ) {
				body.innerHTML = '';
				if ( ! entries.length ) {
					var empty = document.createElement( 'tr' );
					cell( empty, 'No suppressed addresses.' );
					empty.firstChild.colSpan = 5;
					body.appendChild( empty );
				}
				entries.forEach( function ( entry ) {
					var row = document.createElement( 'tr' );
					row.className = 'postbag-suppression-row';
					cell( row, entry.address || entry.address_hash );
					cell( row, entry.scope );
					cell( row, entry.reason );
					cell( row, entry.at );
					var actions = document.createElement( 'td' );
					var button = document.createElement( 'button' );
					button.type = 'button';
					button.className = 'button postbag-suppression-remove';
					text( button, 'Remove' );
					button.setAttribute( 'aria-label', 'Remove ' + ( entry.address || entry.address_hash ) + ' (' + entry.scope + ')' );
					button.addEventListener( 'click', function () {
						apiFetch( { path: '/postbag/v1/suppressions/' + entry.address_hash + '?scope=' + encodeURIComponent( entry.scope ), method: 'DELETE' } )
							.then( function () {
								text( live, 'Removed ' + ( entry.address || entry.address_hash ) + '.' );
								load();
							} )
							.catch( function ( error ) {
								text( live, error.message || error.code );
							} );
					} );
					actions.appendChild( button );
					row.appendChild( actions );
					body.appendChild( row );
				} );
			} ).catch( function ( error ) {
				text( live, 'The suppression list cannot be read: ' + ( error.message || error.code ) );
			} );
		}
		root.querySelector( '#postbag-suppression-add' ).addEventListener( 'submit', function ( event ) {
			event.preventDefault();
			var address = root.querySelector( '#postbag-suppression-address' );
			var scope = root.querySelector( '#postbag-suppression-scope' );
			apiFetch( { path: '/postbag/v1/suppressions', method: 'POST', data: { address: address.value, scope: scope.value } } )
				.then( function () {
					text( live, 'Suppressed ' + address.value + '.' );
					address.value = '';
					load();
				} )
				.catch( function ( error ) {
					text( live, error.message || error.code );
					address.focus();
				} );
		} );
		load();
	}

	document.addEventListener( 'DOMContentLoaded', function () {
		var status = document.getElementById( 'postbag-test-status' );
		if ( status ) {
			watchTest( status );
		}
		var root = document.getElementById( 'postbag-suppressions' );
		if ( root ) {
			suppressions( root );
		}
	} );
}() );
