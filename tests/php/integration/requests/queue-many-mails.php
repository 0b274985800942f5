<?php
/**
 * One WordPress request in its own PHP process that queues many small marked
 * mails, as a newsletter or a bulk import would, under whatever memory_limit
 * the caller gives PHP (-d memory_limit=128M). The plugin flushes early when
 * memory runs low and the rest on `shutdown`; after that, the last shutdown
 * function prints what happened as one JSON line.
 *
 * Usage: php -d memory_limit=128M queue-many-mails.php <wp-config.php> <constants as JSON> <count>
 * Mail n goes to reader<n>@example.net with the subject "Mail #<n>".
 *
 * @package Postbag\Tests
 */

if ( PHP_SAPI !== 'cli' || 4 !== $argc ) {
	fwrite( STDERR, "usage: php queue-many-mails.php <wp-config.php> <constants as JSON> <count>\n" );
	exit( 2 );
}
require __DIR__ . '/boot-cli-request.php';

$postbag_report = array(
	'queued'           => 0,
	'refused'          => 0,
	'batches_uploaded' => 0,
	'mails_uploaded'   => 0,
	'batches_spooled'  => 0,
	'early_uploads'    => 0,
	'memory_limit'     => ini_get( 'memory_limit' ),
);
add_action(
	'postbag_batch_uploaded',
	static function ( $batch_id, $mail_ids ) use ( &$postbag_report ) {
		++$postbag_report['batches_uploaded'];
		$postbag_report['mails_uploaded'] += count( $mail_ids );
		if ( ! did_action( 'shutdown' ) ) {
			++$postbag_report['early_uploads'];
		}
	},
	10,
	2
);
add_action(
	'postbag_batch_spooled',
	static function () use ( &$postbag_report ) {
		++$postbag_report['batches_spooled'];
	}
);
add_action(
	'wp_mail_failed',
	static function () use ( &$postbag_report ) {
		++$postbag_report['refused'];
	}
);
$postbag_start = hrtime( true );
// After WordPress's own shutdown function, which runs the plugin's flush.
register_shutdown_function(
	static function () use ( &$postbag_report, $postbag_start ) {
		$postbag_report['seconds']        = round( ( hrtime( true ) - $postbag_start ) / 1e9, 2 );
		$postbag_report['peak_bytes']     = memory_get_peak_usage();
		$postbag_report['peak_real_bytes'] = memory_get_peak_usage( true );
		echo wp_json_encode( $postbag_report ), "\n";
	}
);

$postbag_count = (int) $argv[3];
for ( $postbag_n = 0; $postbag_n < $postbag_count; $postbag_n++ ) {
	if ( wp_mail( array( "reader$postbag_n@example.net", 'nonpriority@asynchronous.mail' ), "Mail #$postbag_n", "Hello reader $postbag_n." ) ) {
		++$postbag_report['queued'];
	}
}
$postbag_report['queue_seconds'] = round( ( hrtime( true ) - $postbag_start ) / 1e9, 2 );
