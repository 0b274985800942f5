<?php
/**
 * The test site served like a production one: nginx, then PHP-FPM, then the
 * plugin uploading to the stand-in's S3.
 *
 * @package Postbag\Tests
 */

/**
 * Starts PHP-FPM with a pool like a real site's and nginx in front of it,
 * serving integration/requests/nginx-notify.php for a site whose plugin
 * uploads to `$bucket` at the stand-in. Each request may ask for a report
 * the worker writes when its shutdown work is over: the after-response part
 * is timed from that. Shared by bench/notify.php and Postbag_NginxTest.
 */
final class Postbag_Test_Notify_Site {

	/**
	 * Pool settings a real site has (on top of pm = static with 2 children):
	 * Debian's default memory_limit, enforced, and a hard stop for a stuck worker.
	 */
	const POOL = array(
		'php_admin_value[memory_limit] = 128M',
		'request_terminate_timeout = 300s',
	);

	/** @var Postbag_Test_Local_Aws */
	public $aws;

	/** @var string */
	public $bucket;

	/** @var Postbag_Test_Php_Fpm */
	public $fpm;

	/** @var Postbag_Test_Nginx */
	public $nginx;

	/** @var string Directory the workers' reports go to. */
	private $reports;

	/**
	 * @param Postbag_Test_Local_Aws $aws    The stand-in.
	 * @param string                 $bucket An existing bucket.
	 * @param string                 $spool  The site's POSTBAG_SPOOL_DIR.
	 */
	public function __construct( Postbag_Test_Local_Aws $aws, string $bucket, string $spool ) {
		$sandbox       = Postbag_Test_WordPress::$sandbox;
		$this->aws     = $aws;
		$this->bucket  = $bucket;
		$this->reports = $sandbox->path( 'reports-' . bin2hex( random_bytes( 4 ) ), true );
		$this->fpm     = new Postbag_Test_Php_Fpm( $sandbox, self::POOL );
		try {
			$this->nginx = new Postbag_Test_Nginx(
				$sandbox,
				$this->fpm,
				dirname( __DIR__ ) . '/integration/requests',
				array(
					'POSTBAG_TEST_WP_CONFIG' => $sandbox->path( 'wp-config.php' ),
					'POSTBAG_TEST_REPORTS'   => $this->reports,
					'POSTBAG_TEST_CONSTANTS' => json_encode(
						Postbag_Test_Local_Aws::site_constants( $aws->endpoint, $bucket, $spool ),
						JSON_UNESCAPED_SLASHES
					),
				)
			);
		} catch ( Throwable $e ) {
			$this->fpm->stop();
			throw $e;
		}
	}

	/**
	 * GETs the page with `$query` and a report named `$report`.
	 *
	 * @param array<string, string|int> $query   `role` or `mails`.
	 * @param string                    $report  Name of the worker's report ([a-z0-9-]).
	 * @param float                     $timeout Seconds to wait for the response.
	 * @return array See Postbag_Test_Nginx::get().
	 */
	public function request( array $query, string $report, float $timeout ): array {
		return $this->nginx->get( Postbag_Test_Nginx::PAGES_PATH . 'nginx-notify.php?' . http_build_query( $query + array( 'report' => $report ) ), $timeout );
	}

	/**
	 * The worker's report once its shutdown work is over, or null after `$timeout` seconds.
	 *
	 * @param string $report  Name given to request().
	 * @param float  $timeout Seconds.
	 * @return array{pid: int, peak_bytes: int, ended_at: float, actions: array}|null
	 */
	public function report( string $report, float $timeout ): ?array {
		$file     = "{$this->reports}/$report.json";
		$deadline = microtime( true ) + $timeout;
		while ( ! is_file( $file ) ) {
			if ( microtime( true ) > $deadline ) {
				return null;
			}
			usleep( 5000 );
		}
		return json_decode( (string) file_get_contents( $file ), true, 512, JSON_THROW_ON_ERROR );
	}

	/**
	 * Follows a job from the request that queued it to its manifest: waits
	 * for that worker's report and, each time a worker stopped with the job
	 * unfinished (its time budget spent), requests wp-cron.php at once, as a
	 * system cron or WordPress's loopback would, and waits for that one.
	 *
	 * @param string $job     Job id.
	 * @param string $report  Report name the queueing request was given.
	 * @param float  $timeout Seconds for the whole job.
	 * @return array{outcome: string, reports: array[]} `uploaded`, or what stopped it
	 *         (`failed: <reason>`, `spooled: <reason>`, `no report`); each worker's report.
	 */
	public function follow( string $job, string $report, float $timeout ): array {
		$deadline = microtime( true ) + $timeout;
		$reports  = array();
		for ( $n = 0; microtime( true ) < $deadline; $n++ ) {
			$name = 0 === $n ? $report : "$report-cron-$n";
			if ( $n > 0 ) {
				$this->nginx->get( Postbag_Test_Nginx::PAGES_PATH . "nginx-wp-cron.php?report=$name", 30 );
			}
			$worker = $this->report( $name, max( 1.0, $deadline - microtime( true ) ) );
			if ( null === $worker ) {
				break;
			}
			$reports[] = $worker;
			foreach ( $worker['actions'] as $action ) {
				if ( $job === $action['first_arg'] && preg_match( '/^postbag_job_(uploaded|failed|spooled)$/', $action['action'], $match ) ) {
					return array(
						'outcome' => $match[1] . ( 'uploaded' === $match[1] ? '' : ': ' . $action['second_arg'] ),
						'reports' => $reports,
					);
				}
			}
		}
		return array(
			'outcome' => 'no report',
			'reports' => $reports,
		);
	}

	/**
	 * How many objects the bucket holds under `$prefix`.
	 */
	public function count( string $prefix ): int {
		return (int) $this->aws->s3( array( 'count', $this->bucket, $prefix ) )['count'];
	}

	/**
	 * What PHP-FPM and its workers logged (errors, warnings), for failure messages.
	 */
	public function logs(): string {
		$logs = '';
		foreach ( array( $this->fpm->log, dirname( $this->fpm->log ) . '/php-errors.log', $this->nginx->log ) as $log ) {
			$logs .= (string) @file_get_contents( $log ); // phpcs:ignore WordPress.PHP.NoSilencedErrors -- a log may not exist yet.
		}
		return $logs;
	}

	public function stop(): void {
		$this->nginx->stop();
		$this->fpm->stop();
	}
}
