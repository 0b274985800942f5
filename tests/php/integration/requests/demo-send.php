<?php
/**
 * make demo's page (standin/demo_wordpress.py), served through nginx and PHP-FPM
 * like nginx-notify.php: what a site does when a post goes out. One request
 * sends `?mails=<n>` non-priority mails through wp_mail() (to editor<n>@example.net)
 * and one postbag_notify() job to the users of `?role=<role>`, each mail with
 * the reader's own name, and answers at once with JSON: `{"mails": <queued>,
 * "job": <id>|null, "error": <message>|null}`. The uploads follow the response.
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/nginx-boot.php';

$postbag_queued = 0;
for ( $postbag_n = 1; $postbag_n <= (int) ( $_GET['mails'] ?? 0 ); $postbag_n++ ) {
	$postbag_queued += (int) wp_mail(
		array( "editor$postbag_n@example.net", 'nonpriority@asynchronous.mail' ),
		"Editor $postbag_n: your post is live",
		"Hello editor $postbag_n,\n\nyour post \"Café culture\" is live at http://blog.example.org/?p=42.",
		array( 'From: Blog <news@example.org>' )
	);
}
$postbag_job = postbag_notify(
	array(
		'recipients' => array( 'user_query' => array( 'role' => (string) ( $_GET['role'] ?? '' ) ) ),
		'from'       => 'Blog <news@example.org>',
		'subject'    => '{{ recipient.name }}, a new post: {{ post.title }}',
		'html'       => '<p>Hi {{ recipient.name }},</p><p><a href="{{ post.url }}">{{ post.title }}</a> is out.</p>',
		'text'       => "Hi {{ recipient.name }},\n\n{{ post.title }} is out: {{ post.url }}\n",
		'context'    => array(
			'post' => array(
				'title' => 'Café culture',
				'url'   => 'http://blog.example.org/?p=42',
			),
		),
	)
);
header( 'Content-Type: application/json' );
echo wp_json_encode(
	array(
		'mails' => $postbag_queued,
		'job'   => is_wp_error( $postbag_job ) ? null : $postbag_job,
		'error' => is_wp_error( $postbag_job ) ? $postbag_job->get_error_message() : null,
	)
);
