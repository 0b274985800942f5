<?php
/**
 * The arguments of postbag_notify(), checked when it is called.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * Everything the sender would refuse that the arguments alone show, refused
 * while the caller can still react: required fields, control characters in
 * whatever becomes a header (Postbag_Mail_Rules, shared with wp_mail()
 * batches), addresses, the schema's sizes, templates whose `{{ }}` or
 * `{% %}` do not close, a context that is not a JSON object, a From outside
 * POSTBAG_ALLOWED_SENDERS. Each refusal is a Postbag_Mail_Exception whose
 * `field` names the argument (`recipients`, `subject`, `headers`...).
 *
 * The recipients are never read here: only the shape of their source is
 * checked, so the call costs the same for ten recipients or a million.
 */
final class Postbag_Notify_Args {

	/** The arguments postbag_notify() knows. */
	const KNOWN = array( 'recipients', 'subject', 'html', 'text', 'context', 'list', 'from', 'reply_to', 'headers', 'attachments', 'send_at', 'send_between' );

	/** WP_User_Query arguments that would change the set of users or break the keyset: refused. */
	const USER_QUERY_REFUSED = array( 'number', 'offset', 'paged' );

	/** The list name of the schema (`meta.list`). */
	const LIST_PATTERN = '/^[a-z0-9][a-z0-9_-]{0,54}$/';

	/** Largest `context`, encoded: it travels in the manifest the splitter reads whole. */
	const MAX_CONTEXT_BYTES = 1048576;

	/** @var Postbag_Allowed_Senders */
	private $senders;

	/** @var Postbag_Interceptor Knows core's default From. */
	private $interceptor;

	/** @var Postbag_Attachment_Reader */
	private $attachments;

	/** @var Postbag_Send_Time Reads send_at and send_between. */
	private $times;

	/**
	 * @param Postbag_Allowed_Senders   $senders     POSTBAG_ALLOWED_SENDERS.
	 * @param Postbag_Interceptor       $interceptor Computes the default From as wp_mail() batches get it.
	 * @param Postbag_Attachment_Reader $attachments Reads the attachments.
	 * @param Postbag_Send_Time|null    $times       Reads send_at and send_between; default: the real clock, the site's zone.
	 */
	public function __construct( Postbag_Allowed_Senders $senders, Postbag_Interceptor $interceptor, Postbag_Attachment_Reader $attachments, ?Postbag_Send_Time $times = null ) {
		$this->senders     = $senders;
		$this->interceptor = $interceptor;
		$this->attachments = $attachments;
		$this->times       = $times ?? new Postbag_Send_Time( 'time' );
	}

	/**
	 * @param array $args postbag_notify() arguments.
	 * @return array{source: array, meta: array, template: array, context_json: string, attachments: array[], blobs: array<int, string>, schedule: array}
	 *         `schedule` is Postbag_Send_Time::schedule()'s; `source` is `{kind: user_query, args}`, `{kind: callback, callback, args}` or
	 *         `{kind: memory, rows}`; `blobs` the bodies of attachments too large to inline, by entry index.
	 * @throws Postbag_Mail_Exception Naming the argument at fault.
	 */
	public function check( array $args ): array {
		$unknown = array_diff( array_keys( $args ), self::KNOWN );
		if ( $unknown ) {
			$field = (string) reset( $unknown );
			throw new Postbag_Mail_Exception( 'postbag_unknown_argument', sprintf( 'postbag_notify() has no argument %s.', $field ), $field );
		}
		$schedule    = $this->times->schedule( $args['send_at'] ?? null, $args['send_between'] ?? null );
		$source      = self::source( $args['recipients'] ?? null );
		$template    = $this->template( $args );
		$attachments = self::field(
			'attachments',
			function () use ( $args, $template ): array {
				$budget = Postbag_Mail_Rules::attachment_budget( strlen( $template['html'] ) + strlen( $template['text'] ?? '' ), true );
				return $this->attachments->read( $args['attachments'] ?? array(), $budget );
			}
		);
		return array(
			'source'       => $source,
			'meta'         => $this->meta( $args ),
			'template'     => $template,
			'context_json' => self::context( $args['context'] ?? array() ),
			'attachments'  => $attachments['entries'],
			'blobs'        => $attachments['blobs'],
			'schedule'     => $schedule,
		);
	}

	/**
	 * @param mixed $recipients The `recipients` argument.
	 * @throws Postbag_Mail_Exception When it is none of the three forms.
	 */
	private static function source( $recipients ): array {
		if ( null === $recipients ) {
			throw new Postbag_Mail_Exception( 'postbag_missing_argument', 'postbag_notify() needs recipients: a user_query, a callback, or rows.', 'recipients' );
		}
		if ( is_array( $recipients ) && array_key_exists( 'user_query', $recipients ) ) {
			return self::user_query( $recipients );
		}
		if ( is_array( $recipients ) && array_key_exists( 'callback', $recipients ) ) {
			return self::callback( $recipients );
		}
		if ( is_iterable( $recipients ) || $recipients instanceof Closure ) {
			return array(
				'kind' => 'memory',
				'rows' => $recipients,
			);
		}
		throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'recipients must be array( \'user_query\' => args ), array( \'callback\' => name, \'args\' => args ), rows, an iterable or a Closure returning one.', 'recipients' );
	}

	/**
	 * @param array $recipients `user_query` => WP_User_Query arguments.
	 * @throws Postbag_Mail_Exception For other keys, arguments that change the set, or ones not storable.
	 */
	private static function user_query( array $recipients ): array {
		$query = $recipients['user_query'];
		if ( count( $recipients ) > 1 || ! is_array( $query ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'recipients must be array( \'user_query\' => array( WP_User_Query arguments ) ) and nothing else.', 'recipients.user_query' );
		}
		foreach ( self::USER_QUERY_REFUSED as $name ) {
			if ( isset( $query[ $name ] ) ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( 'A user_query of postbag_notify() may not set %s: every matching user is notified, read a page at a time by ID.', $name ), "recipients.user_query.$name" );
			}
		}
		self::storable( 'recipients.user_query', $query );
		return array(
			'kind' => 'user_query',
			'args' => $query,
		);
	}

	/**
	 * @param array $recipients `callback` => function name, `args` => its arguments.
	 * @throws Postbag_Mail_Exception When the callback is not callable by name, or its arguments are not storable.
	 */
	private static function callback( array $recipients ): array {
		$callback = $recipients['callback'];
		if ( ! is_string( $callback ) || ! is_callable( $callback ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'The recipients callback must be the name of a function (or \'Class::method\') defined in every request: another process may continue the job.', 'recipients.callback' );
		}
		$unknown = array_diff( array_keys( $recipients ), array( 'callback', 'args' ) );
		if ( $unknown ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( 'recipients has callback and args, not %s.', implode( ', ', $unknown ) ), 'recipients' );
		}
		$args = $recipients['args'] ?? array();
		if ( ! is_array( $args ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'recipients args must be an array.', 'recipients.args' );
		}
		self::storable( 'recipients.args', $args );
		return array(
			'kind'     => 'callback',
			'callback' => $callback,
			'args'     => $args,
		);
	}

	/**
	 * @param string $field Argument, for the message.
	 * @param array  $value What must survive a trip through the spool as JSON.
	 * @throws Postbag_Mail_Exception When it cannot.
	 */
	private static function storable( string $field, array $value ): void {
		try {
			$back = json_decode( json_encode( $value, JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION ), true, 512, JSON_THROW_ON_ERROR );
		} catch ( JsonException $e ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( '%s cannot be stored as JSON: %s.', $field, $e->getMessage() ), $field );
		}
		if ( $back !== $value ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( '%s holds objects or other values that do not survive JSON: the job is continued in another process from what was stored.', $field ), $field );
		}
	}

	/**
	 * @param array $args The arguments.
	 * @return array{subject: string, html: string, text?: string}
	 * @throws Postbag_Mail_Exception For a missing, oversized or unbalanced template.
	 */
	private function template( array $args ): array {
		$template = array();
		foreach ( array( 'subject', 'html', 'text' ) as $field ) {
			$value = $args[ $field ] ?? null;
			if ( null === $value || ( 'text' === $field && '' === $value ) ) {
				if ( 'text' === $field ) {
					continue; // Generated from the HTML by the sender.
				}
				throw new Postbag_Mail_Exception( 'postbag_missing_argument', sprintf( 'postbag_notify() needs a %s.', $field ), $field );
			}
			if ( ! is_string( $value ) || '' === trim( $value ) ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( 'The %s must be non-empty text.', $field ), $field );
			}
			if ( ! preg_match( '//u', $value ) ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_utf8', sprintf( 'The %s is not valid UTF-8.', $field ), $field );
			}
			$max = 'subject' === $field ? Postbag_Job_Format_V2::MAX_SUBJECT_CHARS : Postbag_Job_Format_V2::MAX_BODY_CHARS;
			if ( mb_strlen( $value ) > $max ) {
				throw new Postbag_Mail_Exception( 'postbag_too_large', sprintf( 'The %s is longer than %d characters.', $field, $max ), $field );
			}
			if ( 'subject' === $field ) {
				self::field(
					$field,
					static function () use ( $value ): void {
						Postbag_Mail_Rules::header_value( 'subject', $value );
					}
				);
			}
			$unbalanced = self::unbalanced( $value );
			if ( null !== $unbalanced ) {
				throw new Postbag_Mail_Exception( 'postbag_template_syntax', sprintf( 'The %s template %s.', $field, $unbalanced ), $field );
			}
			$template[ $field ] = $value;
		}
		return $template;
	}

	/**
	 * The jinja2 delimiters must pair up: every `{{`, `{%` and `{#` closed by
	 * its own `}}`, `%}` or `#}` before the next opens, and no closing one
	 * alone. The full syntax is the sender's to check (in jinja2 itself).
	 *
	 * @param string $template A template.
	 * @return string|null What is wrong, or null.
	 */
	public static function unbalanced( string $template ): ?string {
		if ( false === strpos( $template, '{' ) && false === strpos( $template, '}' ) ) {
			return null;
		}
		$closers = array(
			'{{' => '}}',
			'{%' => '%}',
			'{#' => '#}',
		);
		preg_match_all( '/\{\{|\{%|\{#|\}\}|%\}|#\}/', $template, $tokens, PREG_OFFSET_CAPTURE );
		$open = null;
		foreach ( $tokens[0] as list( $token, $offset ) ) {
			if ( null !== $open ) {
				if ( $closers[ $open[0] ] === $token ) {
					$open = null;
				} elseif ( '{#' !== $open[0] && isset( $closers[ $token ] ) ) {
					return sprintf( 'opens %s at offset %d inside the %s opened at offset %d', $token, $offset, $open[0], $open[1] );
				}
				continue;
			}
			if ( isset( $closers[ $token ] ) ) {
				$open = array( $token, $offset );
			} elseif ( '#}' !== $token ) {
				return sprintf( 'has %s at offset %d without its opening delimiter', $token, $offset );
			}
		}
		return null === $open ? null : sprintf( 'never closes the %s opened at offset %d', $open[0], $open[1] );
	}

	/**
	 * @param mixed $context The `context` argument.
	 * @return string Its JSON, an object.
	 * @throws Postbag_Mail_Exception When it is not a map, not encodable, or too large.
	 */
	private static function context( $context ): string {
		if ( ! is_array( $context ) || ( $context && Postbag_Job_Format_V2::is_list( $context ) ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'The context must be an array of names => values (a JSON object).', 'context' );
		}
		try {
			$json = $context ? json_encode( $context, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION ) : '{}';
		} catch ( JsonException $e ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( 'The context cannot be encoded as JSON: %s.', $e->getMessage() ), 'context' );
		}
		if ( strlen( $json ) > self::MAX_CONTEXT_BYTES ) {
			throw new Postbag_Mail_Exception( 'postbag_too_large', sprintf( 'The context takes more than %d bytes as JSON.', self::MAX_CONTEXT_BYTES ), 'context' );
		}
		return $json;
	}

	/**
	 * From, Reply-To, custom headers and list, as the manifest's `meta`.
	 *
	 * @param array $args The arguments.
	 * @throws Postbag_Mail_Exception For the first one the sender would refuse.
	 */
	private function meta( array $args ): array {
		$meta     = array( 'from' => $this->from( $args['from'] ?? null ) );
		$reply_to = self::field(
			'reply_to',
			static function () use ( $args ): array {
				return self::mailboxes( 'Reply-To address', $args['reply_to'] ?? array() );
			}
		);
		if ( $reply_to ) {
			$meta['reply_to'] = $reply_to;
		}
		$headers = self::field(
			'headers',
			static function () use ( $args ): array {
				return self::headers( $args['headers'] ?? array() );
			}
		);
		if ( $headers ) {
			$meta['headers'] = $headers;
		}
		// Every notification can be stopped in one click: a job without a list gets the default one.
		$list = $args['list'] ?? Postbag_List_Unsubscribe::DEFAULT_LIST;
		if ( null !== $list ) {
			if ( ! is_string( $list ) || ! preg_match( self::LIST_PATTERN, $list ) ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'The list must be a name of lower-case letters, digits, - and _ (at most 55), such as new-posts.', 'list' );
			}
			$meta['list'] = Postbag_List_Unsubscribe::site_list( $list ); // This site's list, not every site's.
		}
		return $meta;
	}

	/**
	 * The From mailbox: the argument, else core's default with its filters
	 * (as a wp_mail() batch gets it); in POSTBAG_ALLOWED_SENDERS either way.
	 *
	 * @param mixed $from `Name <address>`, an address, or null.
	 * @throws Postbag_Mail_Exception When it is not a valid, allowed mailbox.
	 */
	private function from( $from ): string {
		if ( null === $from ) {
			/** This filter is documented in wp-includes/pluggable.php */
			$from = Postbag_Header_Parser::format_mailbox( (string) apply_filters( 'wp_mail_from_name', 'WordPress' ), $this->interceptor->effective_default_from() );
		}
		if ( ! is_string( $from ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'from must be a mailbox (Name <address>) or an address.', 'from' );
		}
		$mailbox = self::field(
			'from',
			static function () use ( $from ): string {
				return self::mailboxes( 'From address', array( $from ) )[0] ?? '';
			}
		);
		list( , $email ) = Postbag_Header_Parser::split_mailbox( $mailbox );
		if ( ! $this->senders->allows( $email ) ) {
			throw new Postbag_Mail_Exception( 'postbag_sender_not_allowed', $this->senders->refusal( $email ), 'from' );
		}
		return $mailbox;
	}

	/**
	 * @param string          $field     Field name for messages.
	 * @param string|string[] $mailboxes A comma-separated string or a list.
	 * @return string[] Normalised mailboxes.
	 * @throws Postbag_Mail_Exception For a control character or an invalid address (never dropped: the caller asked for it).
	 */
	private static function mailboxes( string $field, $mailboxes ): array {
		if ( ! is_string( $mailboxes ) && ! is_array( $mailboxes ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', sprintf( 'The %s must be text or a list.', $field ) );
		}
		$valid = array();
		foreach ( Postbag_Header_Parser::split_addresses( $mailboxes ) as $mailbox ) {
			Postbag_Mail_Rules::header_value( $field, $mailbox );
			list( $name, $email ) = Postbag_Header_Parser::split_mailbox( $mailbox );
			if ( ! is_email( $email ) ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_address', sprintf( 'Invalid address (%s): %s', $field, $email ) );
			}
			$valid[] = Postbag_Header_Parser::format_mailbox( $name, $email );
		}
		return $valid;
	}

	/**
	 * @param mixed $headers Name => value, or `Name: value` lines.
	 * @return array<int, array{name: string, value: string}>
	 * @throws Postbag_Mail_Exception For a reserved or malformed header, or too many.
	 */
	private static function headers( $headers ): array {
		if ( ! is_array( $headers ) ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_argument', 'headers must be an array of name => value (or of "Name: value" lines).' );
		}
		$out = array();
		foreach ( $headers as $name => $value ) {
			if ( is_int( $name ) && is_string( $value ) && false !== strpos( $value, ':' ) ) {
				list( $name, $value ) = array_map( 'trim', explode( ':', $value, 2 ) );
			}
			if ( ! is_string( $name ) || ! is_scalar( $value ) || ! preg_match( '/^[!-9;-~]{1,76}$/', $name ) ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_header', sprintf( 'Invalid header %s.', is_string( $name ) ? $name : '#' . $name ) );
			}
			$value = (string) $value;
			Postbag_Mail_Rules::header_name( $name );
			Postbag_Mail_Rules::header_value( "header $name", $value );
			if ( strlen( $value ) > 998 ) {
				throw new Postbag_Mail_Exception( 'postbag_invalid_header', sprintf( 'The %s header is longer than 998 characters.', $name ) );
			}
			$out[] = array(
				'name'  => $name,
				'value' => $value,
			);
		}
		if ( count( $out ) > Postbag_Job_Format_V2::MAX_HEADERS ) {
			throw new Postbag_Mail_Exception( 'postbag_invalid_header', sprintf( 'A notify job may have at most %d custom headers.', Postbag_Job_Format_V2::MAX_HEADERS ) );
		}
		return $out;
	}

	/**
	 * Runs a check whose exceptions name the argument it belongs to (the
	 * shared rules name the header or address inside it).
	 *
	 * @param string   $field The argument.
	 * @param callable $check The check.
	 * @return mixed What the check returns.
	 * @throws Postbag_Mail_Exception With `field` set to `$field`.
	 */
	private static function field( string $field, callable $check ) {
		try {
			return $check();
		} catch ( Postbag_Mail_Exception $e ) {
			throw new Postbag_Mail_Exception( $e->reason, $e->getMessage(), $field );
		}
	}
}
