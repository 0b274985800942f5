<?php
/**
 * make demo's scheduling page (standin/demo_schedule.py), served like
 * demo-send.php: what a site does when it plans mail ahead. One request queues
 *
 * - a reminder through wp_mail() to editor@example.net, held until
 *   `?remind_at=<time>` (its X-Postbag-Send-At header);
 * - the digest: one postbag_notify() job to the users of `?role=<role>`,
 *   spread over `?start=<time>` to `?end=<time>` (send_between);
 * - an announcement to the same users held until `?announce_at=<time>`
 *   (the demo cancels it through the REST route);
 *
 * times as postbag_notify() takes them, and answers at once with JSON:
 * `{"reminder": <mails queued>, "digest": <job id>|null, "announcement":
 * <job id>|null, "errors": [<message>, ...]}`. The uploads follow the response.
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/nginx-boot.php';

$postbag_errors   = array();
$postbag_reminder = (int) wp_mail(
	array( 'editor@example.net', 'nonpriority@asynchronous.mail' ),
	'Reminder: the editors meet in an hour',
	"Hello,\n\nthe editors meet in an hour in the usual room.",
	array( 'From: Blog <news@example.org>', 'X-Postbag-Send-At: ' . (string) ( $_GET['remind_at'] ?? '' ) )
);

/**
 * A job to every user of the role, or null (its error noted).
 *
 * @param array $args   postbag_notify() arguments besides the recipients and the sender.
 * @param array $errors Where an error's message goes.
 */
function postbag_demo_job( array $args, array &$errors ): ?string {
	$job = postbag_notify(
		$args + array(
			'recipients' => array( 'user_query' => array( 'role' => (string) ( $_GET['role'] ?? '' ) ) ),
			'from'       => 'Blog <news@example.org>',
		)
	);
	if ( is_wp_error( $job ) ) {
		$errors[] = $job->get_error_message();
		return null;
	}
	return $job;
}

$postbag_digest       = postbag_demo_job(
	array(
		'subject'      => '{{ recipient.name }}, your weekly digest',
		'html'         => "<p>Hi {{ recipient.name }},</p><p>this week: {{ titles | join(', ') }}.</p>",
		'text'         => "Hi {{ recipient.name }},\n\nthis week: {{ titles | join(', ') }}.\n",
		'context'      => array( 'titles' => array( 'Café culture', 'Night trains', 'Spring recipes' ) ),
		'send_between' => array( (string) ( $_GET['start'] ?? '' ), (string) ( $_GET['end'] ?? '' ) ),
	),
	$postbag_errors
);
$postbag_announcement = postbag_demo_job(
	array(
		'subject' => '{{ recipient.name }}, an announcement (cancelled: never sent)',
		'html'    => '<p>Hi {{ recipient.name }},</p><p>this announcement was cancelled.</p>',
		'text'    => "Hi {{ recipient.name }},\n\nthis announcement was cancelled.\n",
		'send_at' => (string) ( $_GET['announce_at'] ?? '' ),
	),
	$postbag_errors
);
header( 'Content-Type: application/json' );
echo wp_json_encode(
	array(
		'reminder'     => $postbag_reminder,
		'digest'       => $postbag_digest,
		'announcement' => $postbag_announcement,
		'errors'       => $postbag_errors,
	)
);
