<?php
/**
 * Takes non-priority mail out of wp_mail().
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * The `pre_wp_mail` filter: a marked mail is queued (wp_mail() returns true)
 * or refused (false, and `wp_mail_failed` fires); every other mail returns
 * null and goes on through core untouched. A marked mail is never handed to
 * core: what Postbag refuses stays refused.
 *
 * `pre_wp_mail` runs before core applies its From, content-type and charset
 * filters, so they are applied here, at enqueue time, with core's defaults.
 * Whatever the sender would refuse later (Postbag_Mail_Rules, a From outside
 * POSTBAG_ALLOWED_SENDERS) is refused now, while the caller can still react.
 *
 * A queued mail may be held by the sender until a time: the header
 * `X-Postbag-Send-At: <time>` (taken out of the headers sent; any form
 * Postbag_Send_Time reads, wall-clock times in the site's zone) or the
 * `postbag_mail_send_at` filter. A time that cannot be read or is too far
 * ahead refuses the mail like any other bad field.
 *
 * A mail may name a list (header `X-Postbag-List: <name>`, taken out of the
 * headers sent, or the `postbag_mail_list` filter): it must then have one
 * recipient (To, Cc and Bcc together; the List-Unsubscribe link is that
 * person's), which is dropped (`postbag_mail_suppressed`) when the site's
 * suppression list holds it for every list or this one; otherwise the mail
 * gets `meta.list` and the RFC 8058 headers computed here. A caller's own
 * List-Unsubscribe together with a list is refused.
 */
final class Postbag_Interceptor {

	/** SES refuses a mail with more recipients (To + Cc + Bcc). */
	const MAX_RECIPIENTS = 50;

	/** The header that schedules a queued mail (lower case: header names are matched so). */
	const SEND_AT_HEADER = 'x-postbag-send-at';

	/** The header that names a queued mail's list (lower case). */
	const LIST_HEADER = 'x-postbag-list';

	/** @var Postbag_Queue */
	private $queue;

	/** @var Postbag_Marker */
	private $marker;

	/** @var Postbag_Attachment_Reader */
	private $attachments;

	/** @var array<int, array{url: string, blog_id: int}> Site of each blog seen, by blog id. */
	private $sites = array();

	/** @var Postbag_Allowed_Senders */
	private $senders;

	/** @var string|null Core's default From address, computed once. */
	private $default_from;

	/** @var Postbag_Send_Time Reads X-Postbag-Send-At. */
	private $times;

	/** @var Postbag_List_Unsubscribe|null Links and suppressions of list mail; null: made from wp-config.php on first use. */
	private $lists;

	/**
	 * @param Postbag_Queue                $queue       Where queued mail goes.
	 * @param Postbag_Marker               $marker      The non-priority marks.
	 * @param Postbag_Attachment_Reader    $attachments Reads attachment files.
	 * @param Postbag_Allowed_Senders|null $senders     The From addresses allowed; default: any.
	 * @param Postbag_Send_Time|null       $times       Reads send times; default: the real clock, the site's zone.
	 * @param Postbag_List_Unsubscribe|null $lists      List mail's links and suppressions; default: from wp-config.php.
	 */
	public function __construct( Postbag_Queue $queue, Postbag_Marker $marker, Postbag_Attachment_Reader $attachments, ?Postbag_Allowed_Senders $senders = null, ?Postbag_Send_Time $times = null, ?Postbag_List_Unsubscribe $lists = null ) {
		$this->queue       = $queue;
		$this->marker      = $marker;
		$this->attachments = $attachments;
		$this->senders     = $senders ?? new Postbag_Allowed_Senders( '' );
		$this->times       = $times ?? new Postbag_Send_Time( 'time' );
		$this->lists       = $lists;
	}

	public function init(): void {
		add_filter( 'pre_wp_mail', array( $this, 'pre_wp_mail' ), 10, 2 );
	}

	public function remove(): void {
		remove_filter( 'pre_wp_mail', array( $this, 'pre_wp_mail' ), 10 );
	}

	/**
	 * Runs `$send` with interception off, so mail handed to core really goes through core.
	 *
	 * @param callable $send Work that calls wp_mail().
	 * @return mixed What `$send` returns.
	 */
	public function bypass( callable $send ) {
		$active = false !== has_filter( 'pre_wp_mail', array( $this, 'pre_wp_mail' ) );
		$this->remove();
		try {
			return $send();
		} finally {
			if ( $active ) {
				$this->init();
			}
		}
	}

	/**
	 * @param null|bool $result A short-circuit value from an earlier filter, or null.
	 * @param array     $atts   wp_mail() arguments exactly as the caller passed them.
	 * @return null|bool Null to let core send; true when queued; false when refused.
	 */
	public function pre_wp_mail( $result, $atts ) {
		if ( null !== $result || ! is_array( $atts ) ) {
			return $result; // Another plugin already decided.
		}
		$draft = null;
		$error = null;
		if ( $this->marker->may_be_marked( $atts ) ) {
			try {
				$draft = $this->draft( $atts );
			} catch ( Postbag_Mail_Exception $e ) {
				$error = $e; // Mentions the marker but is malformed: ours to refuse.
			}
		}
		$marked = null !== $error || ( null !== $draft && $draft['marked'] );

		/**
		 * Filters whether an unmarked mail is non-priority (queued instead of sent now).
		 *
		 * @param bool  $non_priority False: the mail carries neither marker.
		 * @param array $atts         wp_mail() arguments as passed.
		 */
		if ( ! $marked && ! apply_filters( 'postbag_is_non_priority', false, $atts ) ) {
			return null;
		}
		try {
			if ( null !== $error ) {
				throw $error;
			}
			$this->enqueue( $draft ?? $this->draft( $atts ), $atts );
			return true;
		} catch ( Postbag_Mail_Exception $e ) {
			$data                   = $atts;
			$data['postbag_reason'] = $e->reason;
			if ( '' !== $e->field ) {
				$data['postbag_field'] = $e->field;
			}
			/** This action is documented in wp-includes/pluggable.php */
			do_action( 'wp_mail_failed', new WP_Error( 'wp_mail_failed', $e->getMessage(), $data ) );
			return false;
		}
	}

	/**
	 * Parses recipients, headers and subject and removes the marks.
	 *
	 * @param array $atts wp_mail() arguments.
	 * @return array{marked: bool, to: string[], subject: string, headers: array}
	 * @throws Postbag_Mail_Exception On CR/LF in a header value, or arguments of the wrong type.
	 */
	private function draft( array $atts ): array {
		self::assert_types( $atts );
		$marked  = false;
		$headers = Postbag_Header_Parser::parse( $atts['headers'] ?? '' );
		$to      = $this->marker->strip_address( Postbag_Header_Parser::split_addresses( $atts['to'] ?? '' ), $marked );
		foreach ( array( 'cc', 'bcc' ) as $field ) {
			$headers[ $field ] = $this->marker->strip_address( $headers[ $field ], $marked );
		}
		$subject = (string) ( $atts['subject'] ?? '' );
		Postbag_Header_Parser::assert_single_line( 'subject', $subject );
		if ( $this->marker->has_prefix( $subject ) ) {
			$marked  = true;
			$subject = $this->marker->strip_prefix( $subject );
		}
		return compact( 'marked', 'to', 'subject', 'headers' );
	}

	/**
	 * Strings or lists of strings, as wp_mail() documents them: anything else
	 * would reach the batch as "Array" or not at all.
	 *
	 * @param array $atts wp_mail() arguments.
	 * @throws Postbag_Mail_Exception For an argument of another type.
	 */
	private static function assert_types( array $atts ): void {
		foreach ( array( 'to', 'subject', 'message', 'headers' ) as $name ) {
			$value = $atts[ $name ] ?? '';
			$items = is_array( $value ) && 'subject' !== $name && 'message' !== $name ? $value : array( $value );
			foreach ( $items as $item ) {
				if ( null !== $item && ! is_scalar( $item ) ) {
					throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( 'wp_mail() was given a %s that is not text.', $name ), $name );
				}
			}
		}
	}

	/**
	 * Computes what core would (From, content type, charset), checks every
	 * field the way the sender will, reads the attachments and queues the mail.
	 *
	 * @param array $draft See draft().
	 * @param array $atts  wp_mail() arguments.
	 * @throws Postbag_Mail_Exception When the mail cannot be queued.
	 */
	private function enqueue( array $draft, array $atts ): void {
		$send_at = $this->send_at( $draft['headers']['headers'], $atts );
		$list    = $this->mail_list( $draft['headers']['headers'], $atts );
		$sender  = $this->sender( $draft['headers'] );
		$message = (string) ( $atts['message'] ?? '' );
		if ( 0 !== strcasecmp( $sender['charset'], 'UTF-8' ) && function_exists( 'mb_convert_encoding' ) ) {
			// Batch files are UTF-8: convert first, so the checks below see the characters meant.
			list( $draft, $sender['from_name'], $message ) = self::to_utf8( array( $draft, $sender['from_name'], $message ), $sender['charset'] );
		}
		self::check_header_fields( $draft, $sender['from_name'] );
		if ( ! $this->senders->allows( $sender['from_email'] ) ) {
			throw new Postbag_Mail_Exception( 'postbag_sender_not_allowed', $this->senders->refusal( $sender['from_email'] ), 'From address' );
		}
		$to          = self::valid_mailboxes( $draft['to'] );
		$unsubscribe = array();
		if ( null !== $list ) {
			$unsubscribe = $this->unsubscribe_headers( $list, $to, $draft['headers'], $atts );
			if ( null === $unsubscribe ) {
				return; // Suppressed: not queued, and not a failure either.
			}
			$draft['headers']['headers'] += $unsubscribe;
		}
		$meta = self::meta( $sender, $draft['headers'], count( $to ) );
		if ( ! empty( $unsubscribe ) ) {
			$meta['list'] = $list; // Only with the headers: the sender wants both or neither.
		}

		/**
		 * Filters the meta a queued mail shares with its batch, e.g. to add an SES
		 * `configuration_set` or message `tags` (see docs/batch-format.md).
		 *
		 * @param array $meta Batch meta.
		 * @param array $atts wp_mail() arguments as passed.
		 */
		$meta = apply_filters( 'postbag_batch_meta', $meta, $atts );

		$budget = Postbag_Mail_Rules::attachment_budget( strlen( $message ), 'text/html' === $sender['content_type'] );
		if ( $budget < 0 ) {
			throw new Postbag_Mail_Exception( 'postbag_message_too_large', sprintf( 'The message is %s: more than the %s SES accepts after base64.', size_format( strlen( $message ), 1 ), size_format( Postbag_Mail_Rules::MAX_RAW_MESSAGE_BYTES ) ), 'message' );
		}
		$attachments = $this->attachments->read( $atts['attachments'] ?? array(), $budget );
		$mail        = Postbag_Batch_Format_V1::mail( wp_generate_uuid4(), $to, $draft['subject'], $message, $sender['content_type'], $attachments['entries'] );
		// Escaping makes JSON somewhat longer than this; the queue corrects a batch that overflows.
		$bytes = 128 + strlen( $draft['subject'] ) + strlen( $message ) + strlen( implode( '","', $to ) )
			+ $attachments['bytes'] + 256 * count( $attachments['entries'] );
		/**
		 * Fires when a mail is queued, before its batch exists (the email log records it).
		 *
		 * @param string   $mail_id Mail id.
		 * @param string[] $to      Its To addresses.
		 * @param string   $subject Its subject.
		 */
		do_action( 'postbag_mail_queued', $mail['id'], $to, $draft['subject'] );
		$this->queue->add( $this->site(), $meta, $mail, $attachments['blobs'], $bytes, $send_at );
	}

	/**
	 * The mail's send time, its header taken out of the custom headers (it is
	 * an instruction to Postbag, never sent).
	 *
	 * @param array<string, string> $headers Custom headers, updated.
	 * @param array                 $atts    wp_mail() arguments as passed.
	 * @return string|null UTC RFC 3339, or null for now.
	 * @throws Postbag_Mail_Exception For a time that cannot be read, or too far ahead.
	 */
	private function send_at( array &$headers, array $atts ): ?string {
		$value = null;
		foreach ( $headers as $name => $header_value ) {
			if ( self::SEND_AT_HEADER === strtolower( (string) $name ) ) {
				$value = '' === trim( $header_value ) ? null : $header_value;
				unset( $headers[ $name ] );
			}
		}

		/**
		 * Filters when a queued mail is sent: held by the sender until then.
		 *
		 * @param mixed $send_at The X-Postbag-Send-At header's value, or null (now); return a Unix
		 *                       timestamp, a DateTimeInterface, a date and time as text (the site's
		 *                       time zone unless it names an offset), or null.
		 * @param array $atts    wp_mail() arguments as passed.
		 */
		$value = apply_filters( 'postbag_mail_send_at', $value, $atts );
		return $this->times->at( $value, 'X-Postbag-Send-At' );
	}

	/**
	 * The mail's list: X-Postbag-List (taken out of the headers), then the filter.
	 *
	 * @param array $headers Custom headers, by name; the list header is removed.
	 * @param array $atts    wp_mail() arguments as passed.
	 * @return string|null Null when the mail names no list.
	 * @throws Postbag_Mail_Exception For a list name the sender would refuse.
	 */
	private function mail_list( array &$headers, array $atts ): ?string {
		$list = null;
		foreach ( $headers as $name => $value ) {
			if ( self::LIST_HEADER === strtolower( (string) $name ) ) {
				$list = '' === trim( $value ) ? null : trim( $value );
				unset( $headers[ $name ] );
			}
		}

		/**
		 * Filters the list a queued mail belongs to: its recipient can unsubscribe from it in one click.
		 *
		 * @param string|null $list The X-Postbag-List header's value, or null.
		 * @param array       $atts wp_mail() arguments as passed.
		 */
		$list = apply_filters( 'postbag_mail_list', $list, $atts );
		if ( null !== $list && ( ! is_string( $list ) || ! preg_match( Postbag_Notify_Args::LIST_PATTERN, $list ) ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_list', 'The list must be a name of lower-case letters, digits, - and _ (at most 55), such as new-posts.', 'X-Postbag-List' );
		}
		return null === $list ? null : Postbag_List_Unsubscribe::site_list( $list ); // This site's list, not every site's.
	}

	/**
	 * RFC 8058's headers for the one recipient of a list mail.
	 *
	 * @param string   $list    List name.
	 * @param string[] $to      Valid To mailboxes.
	 * @param array    $headers Parsed headers (Cc, Bcc, custom ones).
	 * @param array    $atts    wp_mail() arguments as passed.
	 * @return array<string, string>|null The headers (empty on a site without https), or null when
	 *                                    the recipient is suppressed (`postbag_mail_suppressed` fired).
	 * @throws Postbag_Mail_Exception For several recipients, or a List-Unsubscribe of the caller's own.
	 */
	private function unsubscribe_headers( string $list, array $to, array $headers, array $atts ): ?array {
		foreach ( array_keys( $headers['headers'] ) as $name ) {
			if ( 0 === strpos( strtolower( (string) $name ), 'list-unsubscribe' ) ) {
				throw new Postbag_Mail_Exception( 'postbag_list_unsubscribe_given', sprintf( 'A mail that names a list gets its %s header from Postbag (one signed link per recipient): leave yours out.', $name ), "header $name" );
			}
		}
		$recipients = array_merge( $to, self::valid_mailboxes( $headers['cc'] ), self::valid_mailboxes( $headers['bcc'] ) );
		if ( 1 !== count( $recipients ) ) {
			throw new Postbag_Mail_Exception( 'postbag_list_needs_one_recipient', sprintf( 'A mail that names a list must have exactly one recipient (To, Cc and Bcc together), as its unsubscribe link is that person\'s; it has %d. Send one mail per recipient, or use postbag_notify().', count( $recipients ) ), 'to' );
		}
		$address = Postbag_Header_Parser::split_mailbox( $recipients[0] )[1];
		$this->lists = $this->lists ?? new Postbag_List_Unsubscribe( Postbag_Unsubscribe_Token::from_constants( 'time' ), new Postbag_Suppressions(), Postbag_Config::from_constants()->get( 'unsubscribe_mailto' ) );
		try {
			$suppressed = (bool) $this->lists->suppressed( $list, array( $address ) );
		} catch ( RuntimeException $e ) {
			$suppressed = false; // The sender checks its own list before sending anyway.
		}
		if ( $suppressed ) {
			/**
			 * Fires when a mail is not queued because its recipient is on the suppression list.
			 *
			 * @param string $address The recipient.
			 * @param string $list    The mail's list.
			 * @param array  $atts    wp_mail() arguments as passed.
			 */
			do_action( 'postbag_mail_suppressed', $address, $list, $atts );
			return null;
		}
		return $this->lists->headers( $list, $address );
	}

	/**
	 * Every value that becomes a header, checked as the sender will check it:
	 * all the recipients as given (an invalid address is then left out like
	 * core does, but never one hiding a control character), the subject, the
	 * From name, the custom headers.
	 *
	 * @param array  $draft     See draft(), UTF-8.
	 * @param string $from_name The From name, UTF-8.
	 * @throws Postbag_Mail_Exception For the first value the sender would refuse.
	 */
	private static function check_header_fields( array $draft, string $from_name ): void {
		Postbag_Mail_Rules::header_value( 'subject', $draft['subject'] );
		Postbag_Mail_Rules::header_value( 'From name', $from_name );
		$lists = array(
			'To'       => $draft['to'],
			'Cc'       => $draft['headers']['cc'],
			'Bcc'      => $draft['headers']['bcc'],
			'Reply-To' => $draft['headers']['reply_to'],
		);
		foreach ( $lists as $field => $mailboxes ) {
			foreach ( $mailboxes as $mailbox ) {
				Postbag_Mail_Rules::header_value( "$field address", $mailbox );
			}
		}
		foreach ( $draft['headers']['headers'] as $name => $value ) {
			Postbag_Mail_Rules::header_name( (string) $name );
			Postbag_Mail_Rules::header_value( "header $name", $value );
		}
	}

	/**
	 * From, content type and charset as core would send them: headers first,
	 * then core's defaults, then its filters.
	 *
	 * @param array $headers Parsed headers.
	 * @return array{from_email: string, from_name: string, content_type: string, charset: string}
	 * @throws Postbag_Mail_Exception For a From with a line break or an invalid address, or a multipart mail.
	 */
	private function sender( array $headers ): array {
		/** This filter is documented in wp-includes/pluggable.php */
		$from_email = (string) apply_filters( 'wp_mail_from', $headers['from_email'] ?? $this->default_from() );
		/** This filter is documented in wp-includes/pluggable.php */
		$from_name = (string) apply_filters( 'wp_mail_from_name', $headers['from_name'] ?? 'WordPress' );
		/** This filter is documented in wp-includes/pluggable.php */
		$content_type = strtolower( trim( (string) apply_filters( 'wp_mail_content_type', $headers['content_type'] ?? 'text/plain' ) ) );
		/** This filter is documented in wp-includes/pluggable.php */
		$charset = trim( (string) apply_filters( 'wp_mail_charset', $headers['charset'] ?? get_bloginfo( 'charset' ) ) );

		Postbag_Header_Parser::assert_single_line( 'From address', $from_email );
		Postbag_Header_Parser::assert_single_line( 'From name', $from_name );
		if ( ! is_email( $from_email ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_from', sprintf( 'Invalid address: (From): %s', $from_email ) );
		}
		if ( ! in_array( $content_type, Postbag_Batch_Format_V1::CONTENT_TYPES, true ) ) {
			throw new Postbag_Mail_Exception( 'postbag_unsupported_content_type', sprintf( 'Postbag queues text/plain or text/html mail, not %s; send this mail without the non-priority marker.', $content_type ) );
		}
		if ( ! preg_match( '/^[A-Za-z0-9._:-]{1,40}$/', $charset ) ) {
			$charset = 'UTF-8'; // What the batch file is written in anyway.
		}
		return compact( 'from_email', 'from_name', 'content_type', 'charset' );
	}

	/**
	 * The meta shared with the batch: sender, Cc/Bcc/Reply-To, custom headers.
	 *
	 * @param array $sender  See sender().
	 * @param array $headers Parsed headers.
	 * @param int   $to      Valid To recipients.
	 * @throws Postbag_Mail_Exception Without any recipient, with too many recipients or too long a header.
	 */
	private static function meta( array $sender, array $headers, int $to ): array {
		$lists = array(
			'reply_to' => self::valid_mailboxes( $headers['reply_to'] ),
			'cc'       => self::valid_mailboxes( $headers['cc'] ),
			'bcc'      => self::valid_mailboxes( $headers['bcc'] ),
		);
		$recipients = $to + count( $lists['cc'] ) + count( $lists['bcc'] );
		// A mail to a Bcc list (only the marker in To) is fine; a mail to nobody is not.
		if ( 0 === $recipients ) {
			throw new Postbag_Mail_Exception( 'postbag_no_recipient', 'You must provide at least one recipient (To, Cc or Bcc) besides the non-priority marker.' );
		}
		if ( $recipients > self::MAX_RECIPIENTS ) {
			throw new Postbag_Mail_Exception( 'postbag_too_many_recipients', sprintf( 'A queued mail may have at most %d recipients (To, Cc and Bcc together).', self::MAX_RECIPIENTS ) );
		}
		foreach ( $headers['headers'] as $name => $value ) {
			if ( strlen( $value ) > 998 ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_header', sprintf( 'The %s header is longer than 998 characters.', $name ) );
			}
		}
		return Postbag_Batch_Format_V1::meta(
			Postbag_Header_Parser::format_mailbox( $sender['from_name'], $sender['from_email'] ),
			$sender['content_type'],
			$sender['charset'],
			$lists['reply_to'],
			$lists['cc'],
			$lists['bcc'],
			$headers['headers']
		);
	}

	/**
	 * Normalised mailboxes; like core (through PHPMailer), invalid addresses are left out.
	 *
	 * @param string[] $mailboxes As written.
	 * @return string[]
	 */
	private static function valid_mailboxes( array $mailboxes ): array {
		$valid = array();
		foreach ( $mailboxes as $mailbox ) {
			list( $name, $email ) = Postbag_Header_Parser::split_mailbox( $mailbox );
			if ( is_email( $email ) ) {
				$valid[] = Postbag_Header_Parser::format_mailbox( $name, $email );
			}
		}
		return $valid;
	}

	/**
	 * Batch files are UTF-8; text in another declared charset is converted
	 * (the sender encodes the outgoing parts in `meta.charset` again).
	 *
	 * @param array  $fields  Strings, possibly nested.
	 * @param string $charset Their charset.
	 */
	private static function to_utf8( array $fields, string $charset ): array {
		array_walk_recursive(
			$fields,
			static function ( &$value ) use ( $charset ) {
				if ( is_string( $value ) ) {
					try {
						$value = mb_convert_encoding( $value, 'UTF-8', $charset );
					} catch ( ValueError $e ) {
						return; // Unknown to mbstring: keep the bytes; invalid UTF-8 becomes U+FFFD on encoding.
					}
				}
			}
		);
		return $fields;
	}

	/** The site sending, recorded per blog (a multisite request may switch blogs). */
	private function site(): array {
		$blog_id = get_current_blog_id();
		if ( ! isset( $this->sites[ $blog_id ] ) ) {
			$this->sites[ $blog_id ] = array(
				'url'     => home_url(),
				'blog_id' => $blog_id,
			);
		}
		return $this->sites[ $blog_id ];
	}

	/**
	 * The From a mail without one gets: core's default through the wp_mail_from
	 * filter, as sender() computes it (for Site Health).
	 */
	public function effective_default_from(): string {
		/** This filter is documented in wp-includes/pluggable.php */
		return (string) apply_filters( 'wp_mail_from', $this->default_from() );
	}

	/** Core's default From: wordpress@ the network's host, without `www.`. */
	public function default_from(): string {
		if ( null === $this->default_from ) {
			$host               = (string) wp_parse_url( network_home_url(), PHP_URL_HOST );
			$this->default_from = 'wordpress@' . ( 0 === strpos( $host, 'www.' ) ? substr( $host, 4 ) : $host );
		}
		return $this->default_from;
	}
}
