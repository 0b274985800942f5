<?php
/**
 * A page served through nginx and PHP-FPM that notifies the users of a role
 * with one postbag_notify() call (`?role=<role>`), or sends `?mails=<n>`
 * single marked mails through wp_mail() (mail n to reader<n>@example.net),
 * and answers with one line: `job <id>`, `error <code>: <message>` or
 * `queued <n>`. With `?send_at=<time>`, the job or the mails are scheduled
 * (`send_at`, `X-Postbag-Send-At`). Settings and `?report=<name>`: see nginx-boot.php.
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/nginx-boot.php';

if ( isset( $_GET['role'] ) ) {
	$postbag_job = postbag_notify(
		array(
			'recipients' => array( 'user_query' => array( 'role' => (string) $_GET['role'] ) ),
			'subject'    => 'New post: {{ post.title }}',
			'html'       => '<p>Hi {{ recipient.name }}, <a href="{{ post.url }}">{{ post.title }}</a> is out.</p>',
			'context'    => array(
				'post' => array(
					'title' => 'A million readers',
					'url'   => 'http://blog.example.org/a-million-readers/',
				),
			),
			'list'       => 'new-posts',
			'send_at'    => isset( $_GET['send_at'] ) ? (string) $_GET['send_at'] : null,
		)
	);
	echo is_wp_error( $postbag_job ) ? 'error ' . $postbag_job->get_error_code() . ': ' . $postbag_job->get_error_message() : 'job ' . $postbag_job;
} else {
	$postbag_queued = 0;
	for ( $postbag_n = 0; $postbag_n < (int) ( $_GET['mails'] ?? 0 ); $postbag_n++ ) {
		$postbag_queued += (int) wp_mail( array( "reader$postbag_n@example.net", 'nonpriority@asynchronous.mail' ), "Mail #$postbag_n", "Hello reader $postbag_n.", isset( $_GET['send_at'] ) ? array( 'X-Postbag-Send-At: ' . $_GET['send_at'] ) : array() );
	}
	echo 'queued ', (int) $postbag_queued;
}
