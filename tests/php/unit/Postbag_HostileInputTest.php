<?php
/**
 * Hostile input through wp_mail(): refused by name, or carried verbatim.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/class-postbag-unit-test-case.php';

/**
 * One table of what a visitor, a plugin or a careless caller can hand to
 * wp_mail() in a marked mail. Each case either is refused the way core
 * reports a failure (wp_mail() false, one `wp_mail_failed` naming the field
 * and the reason, nothing queued, nothing sent through core instead), or is
 * legal and must reach the batch file exactly as given, for the sender to
 * encode (never interpreted on the way).
 *
 * @covers Postbag_Interceptor
 * @covers Postbag_Mail_Rules
 * @covers Postbag_Header_Parser
 * @covers Postbag_Attachment_Reader
 * @covers Postbag_Allowed_Senders
 */
final class Postbag_HostileInputTest extends Postbag_Unit_Test_Case {

	/** Control characters the sender refuses in any header, by name. */
	const CONTROL_CHARACTERS = array(
		'NUL'    => "\x00",
		'BEL'    => "\x07",
		'TAB'    => "\t",
		'VT'     => "\x0B",
		'FF'     => "\x0C",
		'ESC'    => "\x1B",
		'DEL'    => "\x7F",
		'NEL'    => "\u{85}",
		'CSI'    => "\u{9B}",
		'U+2028' => "\u{2028}",
		'U+2029' => "\u{2029}",
	);

	/** An encoded word hiding CRLF + "Bcc: evil@bad.net". */
	const ENCODED_BCC = '=?utf-8?b?DQpCY2M6IGV2aWxAYmFkLm5ldA==?=';

	/**
	 * Refused: the mail, then reason and field of the one `wp_mail_failed`
	 * (and a text the message must hold, default the field).
	 */
	private static function refused( array $mail, string $reason, string $field, ?string $mentions = null ): array {
		return array( $mail, array( 'refused', $reason, $field, $mentions ?? $field ) );
	}

	/**
	 * Legal: the mail, then where in the batch file its value lands and the value.
	 *
	 * @param mixed $value Expected value.
	 */
	private static function kept( array $mail, string $path, $value ): array {
		return array( $mail, array( 'kept', $path, $value ) );
	}

	/**
	 * A mail whose one attachment, a harmless file, is named `$name`.
	 */
	private static function attached_as( string $name ): array {
		return array(
			'files'       => array( 'ok.txt' => 'fine' ),
			'attachments' => array( $name => '{dir}/ok.txt' ),
		);
	}

	/**
	 * Each header-bearing field with `%s` where a hostile character goes:
	 * field name => mail.
	 */
	private static function header_fields(): array {
		return array(
			'subject'           => array( 'subject' => 'Hi%sthere' ),
			'From name'         => array( 'headers' => array( 'From: Ne%sws <news@example.org>' ) ),
			'To address'        => array( 'to' => array( 'Zo%se <zoe@example.net>', self::MARKER ) ),
			'Cc address'        => array( 'headers' => array( 'Cc: An%sn <ann@example.net>' ) ),
			'Bcc address'       => array( 'headers' => array( 'Bcc: Arch%sive <archive@example.org>' ) ),
			'Reply-To address'  => array( 'headers' => array( 'Reply-To: Edi%stors <editors@example.org>' ) ),
			'header X-Campaign' => array( 'headers' => array( 'X-Campaign: week%sly' ) ),
			'name of attachment 1' => self::attached_as( 'na%sme.txt' ),
			'From name (filter)' => array( 'filters' => array( 'wp_mail_from_name' => 'Blo%sg' ) ),
		);
	}

	/**
	 * `$mail` with `%s` replaced by `$text` in every string, keys included.
	 */
	private static function with( array $mail, string $text ): array {
		$out = array();
		foreach ( $mail as $key => $value ) {
			$key         = is_string( $key ) ? str_replace( '%s', $text, $key ) : $key;
			$out[ $key ] = is_array( $value ) ? self::with( $value, $text ) : ( is_string( $value ) ? str_replace( '%s', $text, $value ) : $value );
		}
		return $out;
	}

	public function hostile_inputs(): array {
		$cases = array();

		// Every control character in every header-bearing field.
		foreach ( self::header_fields() as $field => $mail ) {
			foreach ( self::CONTROL_CHARACTERS as $name => $char ) {
				$cases[ "$field: $name" ] = self::refused( self::with( $mail, $char ), 'postbag_control_character', str_replace( ' (filter)', '', $field ) );
			}
		}

		// Header injection by line break, through each door.
		$evil = "\r\nBcc: evil@example.com";
		$cases += array(
			'CRLF: subject'                   => self::refused( array( 'subject' => "Hi$evil" ), 'postbag_header_injection', 'subject' ),
			'CRLF: subject, LF only'          => self::refused( array( 'subject' => "Hi\nBcc: evil@example.com" ), 'postbag_header_injection', 'subject' ),
			'CRLF: subject, CR only'          => self::refused( array( 'subject' => "Hi\rBcc: evil@example.com" ), 'postbag_header_injection', 'subject' ),
			'CRLF: prefixed subject'          => self::refused( array( 'to' => 'a@example.net', 'subject' => "[Non-priority!] Hi$evil" ), 'postbag_header_injection', 'subject' ),
			'CRLF: From name header'          => self::refused( array( 'headers' => array( "From: News$evil <news@example.org>" ) ), 'postbag_header_injection', 'header' ),
			'CRLF: From name filter'          => self::refused( array( 'filters' => array( 'wp_mail_from_name' => "Blog$evil" ) ), 'postbag_header_injection', 'From name' ),
			'CRLF: From address filter'       => self::refused( array( 'filters' => array( 'wp_mail_from' => "news@example.org$evil" ) ), 'postbag_header_injection', 'From address' ),
			'CRLF: Reply-To header'           => self::refused( array( 'headers' => array( "Reply-To: r@example.org$evil" ) ), 'postbag_header_injection', 'header' ),
			'CRLF: Cc header, CR'             => self::refused( array( 'headers' => array( "Cc: c@example.org\rBcc: evil@example.com" ) ), 'postbag_header_injection', 'header' ),
			'CRLF: Bcc header'                => self::refused( array( 'headers' => array( "Bcc: b@example.org$evil" ) ), 'postbag_header_injection', 'header' ),
			'CRLF: custom header'             => self::refused( array( 'headers' => array( "X-Campaign: weekly\nBcc: evil@example.com" ) ), 'postbag_header_injection', 'header' ),
			'CRLF: lone CR in string headers' => self::refused( array( 'headers' => "X-A: 1\rBcc: evil@example.com" ), 'postbag_header_injection', 'header' ),
			'CRLF: to string'                 => self::refused( array( 'to' => "a@example.net$evil, " . self::MARKER ), 'postbag_header_injection', 'address' ),
			'CRLF: to array element'          => self::refused( array( 'to' => array( "a@example.net\nBcc: evil@example.com", self::MARKER ) ), 'postbag_header_injection', 'address' ),
			'CRLF: attachment name'           => self::refused( self::attached_as( "ok.txt$evil" ), 'postbag_header_injection', 'attachment name' ),
		);

		// Bytes that are not UTF-8 in a UTF-8 mail.
		$cases += array(
			'UTF-8: subject truncated'          => self::refused( array( 'subject' => "Caf\xC3" ), 'postbag_invalid_utf8', 'subject' ),
			'UTF-8: subject overlong slash'     => self::refused( array( 'subject' => "a\xC0\xAFb" ), 'postbag_invalid_utf8', 'subject' ),
			'UTF-8: From name lone byte'        => self::refused( array( 'headers' => array( "From: \xFF <news@example.org>" ) ), 'postbag_invalid_utf8', 'From name' ),
			'UTF-8: To name bad continuation'   => self::refused( array( 'to' => array( "Zo\xC3\x28 <zoe@example.net>", self::MARKER ) ), 'postbag_invalid_utf8', 'To address' ),
			'UTF-8: custom header lone surrogate' => self::refused( array( 'headers' => array( "X-Campaign: \xED\xA0\x80" ) ), 'postbag_invalid_utf8', 'header X-Campaign' ),
			'UTF-8: attachment name in Latin-1' => self::refused( self::attached_as( "r\xE9sum\xE9.pdf" ), 'postbag_invalid_utf8', 'name of attachment 1' ),
		);

		// RFC 2047 encoded words: decoded by a MIME parser into whatever they hide.
		$cases += array(
			'encoded word: subject, B'          => self::refused( array( 'subject' => self::ENCODED_BCC ), 'postbag_header_injection', 'subject' ),
			'encoded word: subject, Q'          => self::refused( array( 'subject' => 'Hi =?UTF-8?Q?=0D=0ABcc:_evil@bad.net?=' ), 'postbag_header_injection', 'subject' ),
			'encoded word: subject, language'   => self::refused( array( 'subject' => '=?utf-8*en?q?hello?=' ), 'postbag_header_injection', 'subject' ),
			'encoded word: From name header'    => self::refused( array( 'headers' => array( 'From: ' . self::ENCODED_BCC . ' <news@example.org>' ) ), 'postbag_header_injection', 'From name' ),
			'encoded word: From name filter'    => self::refused( array( 'filters' => array( 'wp_mail_from_name' => self::ENCODED_BCC ) ), 'postbag_header_injection', 'From name' ),
			'encoded word: To display name'     => self::refused( array( 'to' => array( self::ENCODED_BCC . ' <zoe@example.net>', self::MARKER ) ), 'postbag_header_injection', 'To address' ),
			'encoded word: Cc display name'     => self::refused( array( 'headers' => array( 'Cc: ' . self::ENCODED_BCC . ' <ann@example.net>' ) ), 'postbag_header_injection', 'Cc address' ),
			'encoded word: Reply-To'            => self::refused( array( 'headers' => array( 'Reply-To: ' . self::ENCODED_BCC . ' <r@example.org>' ) ), 'postbag_header_injection', 'Reply-To address' ),
			'encoded word: custom header value' => self::refused( array( 'headers' => array( 'X-Campaign: ' . self::ENCODED_BCC ) ), 'postbag_header_injection', 'header X-Campaign' ),
			'encoded word: attachment name'     => self::refused( self::attached_as( '=?utf-8?b?ZXZpbC5leGU=?=' ), 'postbag_header_injection', 'name of attachment 1' ),
		);

		// Headers that only the sender, SES or a mail's path may write.
		foreach ( array( 'Received', 'received', 'Received-SPF', 'DKIM-Signature', 'DomainKey-Signature', 'Authentication-Results', 'ARC-Seal', 'ARC-Message-Signature', 'ARC-Authentication-Results', 'Resent-From', 'Resent-To', 'Resent-Message-ID', 'Return-Path', 'Delivered-To', 'X-Original-To', 'Feedback-ID', 'X-SES-CONFIGURATION-SET', 'X-SES-MESSAGE-TAGS', 'x-ses-source-arn', 'X-Amz-Cf-Id', 'Message-ID', 'Date', 'Sender', 'To', 'Subject', 'Content-Transfer-Encoding', 'Content-Disposition' ) as $name ) {
			$cases[ "reserved header: $name" ] = self::refused( array( 'headers' => array( "$name: forged" ) ), 'postbag_reserved_header', "header $name" );
		}

		// Attachment paths that are not local files: every stream wrapper, as core refuses them.
		foreach ( array(
			'file://'         => 'file:///etc/passwd',
			'FILE:// (case)'  => 'FILE:///etc/hostname',
			'php://filter'    => 'php://filter/read=convert.base64-encode/resource=/etc/passwd',
			'php://memory'    => 'php://memory',
			'phar://'         => 'phar:///tmp/evil.phar/a.txt',
			'data: (no //)'   => 'data:text/plain;base64,SGVsbG8=',
			'data://'         => 'data://text/plain,hello',
			'http://'         => 'http://127.0.0.1/secret.txt',
			'https://'        => 'https://example.com/a.pdf',
			'ftp://'          => 'ftp://example.com/a.pdf',
			'glob://'         => 'glob:///etc/*',
			'compress.zlib'   => 'compress.zlib:///etc/hostname',
			'zip://'          => 'zip:///tmp/a.zip#b.txt',
			'expect://'       => 'expect://id',
		) as $name => $path ) {
			$cases[ "attachment path: $name" ] = self::refused( array( 'attachments' => array( $path ) ), 'postbag_attachment_path', 'attachment path', strtok( $path, ':' ) . ':' );
		}
		$cases += array(
			'attachment path: named file://' => self::refused( array( 'attachments' => array( 'report.pdf' => 'file:///etc/passwd' ) ), 'postbag_attachment_path', 'attachment path', 'file:' ),
			'attachment path: in a string list' => self::refused(
				array(
					'files'       => array( 'ok.txt' => 'fine' ),
					'attachments' => "{dir}/ok.txt\nphp://filter/resource=/etc/passwd",
				),
				'postbag_attachment_path',
				'attachment path',
				'php:'
			),
			'attachment path: NUL'            => self::refused(
				array(
					'files'       => array( 'ok.txt' => 'fine' ),
					'attachments' => array( "{dir}/ok.txt\0.pdf" ),
				),
				'postbag_attachment_path',
				'attachment path'
			),
		);

		// File types SES refuses, also in disguise.
		foreach ( array(
			'exe'                       => 'setup.exe',
			'EXE upper case'            => 'SETUP.EXE',
			'trailing dot'              => 'setup.exe.',
			'trailing dots and blanks'  => 'setup.exe . .',
			'trailing zero-width space' => "setup.exe\u{200B}",
			'trailing BOM'              => "setup.exe\u{FEFF}",
			'trailing no-break space'   => "setup.exe\u{A0}",
			'double extension'          => 'invoice.pdf.js',
			'vbs'                       => 'a.vbs',
			'scr'                       => 'holiday.scr',
			'ps1'                       => 'fix.ps1',
			'lnk'                       => 'shortcut.lnk',
		) as $name => $filename ) {
			$cases[ "attachment type: $name" ] = self::refused( self::attached_as( $filename ), 'postbag_attachment_type', 'name of attachment 1', 'SES refuses .' );
		}
		$cases['attachment type: from the path']      = self::refused(
			array(
				'files'       => array( 'evil.bat' => '@echo off' ),
				'attachments' => array( '{dir}/evil.bat' ),
			),
			'postbag_attachment_type',
			'name of attachment 1',
			'evil.bat'
		);
		$cases['attachment type: NUL before .pdf'] = self::refused( self::attached_as( "setup.exe\0.pdf" ), 'postbag_control_character', 'name of attachment 1' );

		// More than SES takes: 10 MB a message after base64.
		$cases += array(
			'size: one 8 MB attachment'          => self::refused(
				array(
					'files'       => array( 'big.pdf' => 8000000 ),
					'attachments' => array( '{dir}/big.pdf' ),
				),
				'postbag_attachment_too_large',
				'attachments',
				'big.pdf'
			),
			'size: one 20 MB attachment'         => self::refused(
				array(
					'files'       => array( 'huge.zip' => 20 * 1024 * 1024 ),
					'attachments' => array( '{dir}/huge.zip' ),
				),
				'postbag_attachment_too_large',
				'attachments',
				'huge.zip'
			),
			'size: two 4 MB attachments'         => self::refused(
				array(
					'files'       => array(
						'first.pdf'  => 4000000,
						'second.pdf' => 4000000,
					),
					'attachments' => array( '{dir}/first.pdf', '{dir}/second.pdf' ),
				),
				'postbag_attachment_too_large',
				'attachments',
				'add up to'
			),
			'size: attachment on a large HTML body' => self::refused(
				array(
					'message'     => str_repeat( '<p>x</p>', 3 * 1024 * 1024 / 8 ),
					'headers'     => array( 'Content-Type: text/html' ),
					'files'       => array( 'five.pdf' => 5000000 ),
					'attachments' => array( '{dir}/five.pdf' ),
				),
				'postbag_attachment_too_large',
				'attachments',
				'five.pdf'
			),
			'size: body alone'                   => self::refused( array( 'message' => str_repeat( 'a', 8 * 1024 * 1024 ) ), 'postbag_message_too_large', 'message' ),
			'size: 7 MB attachment still fits'   => self::kept(
				array(
					'files'       => array( 'seven.pdf' => 7000000 ),
					'attachments' => array( '{dir}/seven.pdf' ),
				),
				'emails.0.attachments.0.size',
				7000000
			),
		);

		// POSTBAG_ALLOWED_SENDERS.
		$domain = array( 'settings' => array( 'allowed_senders' => 'example.org' ) );
		$cases += array(
			'sender: default From outside the list' => self::refused( $domain, 'postbag_sender_not_allowed', 'From address', 'POSTBAG_ALLOWED_SENDERS' ),
			'sender: From header outside the list'  => self::refused( $domain + array( 'headers' => array( 'From: News <news@evil.example>' ) ), 'postbag_sender_not_allowed', 'From address', 'news@evil.example' ),
			'sender: wp_mail_from outside the list' => self::refused( $domain + array( 'filters' => array( 'wp_mail_from' => 'shop@evil.example' ) ), 'postbag_sender_not_allowed', 'From address', 'shop@evil.example' ),
			'sender: subdomain of an allowed domain' => self::refused( $domain + array( 'headers' => array( 'From: news@mail.example.org' ) ), 'postbag_sender_not_allowed', 'From address', 'news@mail.example.org' ),
			'sender: other address of an allowed one' => self::refused( array( 'settings' => array( 'allowed_senders' => ' News@Example.com ' ), 'headers' => array( 'From: other@example.com' ) ), 'postbag_sender_not_allowed', 'From address', 'other@example.com' ),
			'sender: allowed domain'                => self::kept( $domain + array( 'headers' => array( 'From: News <news@example.org>' ) ), 'meta.from', 'News <news@example.org>' ),
			'sender: allowed address, any case'     => self::kept( array( 'settings' => array( 'allowed_senders' => 'example.net, news@example.com' ), 'headers' => array( 'From: NEWS@Example.COM' ) ), 'meta.from', 'WordPress <NEWS@Example.COM>' ),
			'sender: allowed through wp_mail_from'  => self::kept( $domain + array( 'filters' => array( 'wp_mail_from' => 'shop@example.org' ) ), 'meta.from', 'WordPress <shop@example.org>' ),
		);

		// Legal, to be encoded by the sender rather than interpreted: carried verbatim.
		$cases += array(
			'verbatim: non-ASCII subject'         => self::kept( array( 'subject' => 'Café ☕ — naïve 日本語' ), 'emails.0.subject', 'Café ☕ — naïve 日本語' ),
			'verbatim: emoji subject'             => self::kept( array( 'subject' => '🎉 Party at 8' ), 'emails.0.subject', '🎉 Party at 8' ),
			'verbatim: right-to-left subject'     => self::kept( array( 'subject' => 'שלום עולם' ), 'emails.0.subject', 'שלום עולם' ),
			'verbatim: "=?" not an encoded word'  => self::kept( array( 'subject' => 'Is 2+2 =? 4 ?= yes' ), 'emails.0.subject', 'Is 2+2 =? 4 ?= yes' ),
			'verbatim: quotes and backslashes'    => self::kept( array( 'subject' => 'He said "hi" \\o/' ), 'emails.0.subject', 'He said "hi" \\o/' ),
			'verbatim: Latin-1 subject converted' => self::kept(
				array(
					'subject' => "Caf\xE9",
					'headers' => array( 'Content-Type: text/plain; charset=ISO-8859-1' ),
				),
				'emails.0.subject',
				'Café'
			),
			'verbatim: non-ASCII From name'       => self::kept( array( 'headers' => array( 'From: Zoë’s Blog <news@example.org>' ) ), 'meta.from', 'Zoë’s Blog <news@example.org>' ),
			'verbatim: non-ASCII To name'         => self::kept( array( 'to' => array( 'Åsa Berg <asa@example.net>', self::MARKER ) ), 'emails.0.to.0', 'Åsa Berg <asa@example.net>' ),
			'verbatim: non-ASCII Cc name'         => self::kept( array( 'headers' => array( 'Cc: Jürgen <j@example.net>' ) ), 'meta.cc.0', 'Jürgen <j@example.net>' ),
			'verbatim: non-ASCII custom header'   => self::kept( array( 'headers' => array( 'X-Campaign: Grüße aus Köln' ) ), 'meta.headers.0.value', 'Grüße aus Köln' ),
			'verbatim: non-ASCII attachment name' => self::kept( self::attached_as( 'Résumé 2026.pdf' ), 'emails.0.attachments.0.filename', 'Résumé 2026.pdf' ),
			'verbatim: .exe inside, .pdf last'    => self::kept( self::attached_as( 'setup.exe.pdf' ), 'emails.0.attachments.0.filename', 'setup.exe.pdf' ),
			'verbatim: control characters in the body' => self::kept( array( 'message' => "Line 1\tcol\x0Bvt\x00nul" ), 'emails.0.text', "Line 1\tcol\x0Bvt\x00nul" ),
			'verbatim: HTML body with markup'     => self::kept(
				array(
					'message' => '<p onclick="x()">=?utf-8?b?SGk=?=</p>',
					'headers' => array( 'Content-Type: text/html' ),
				),
				'emails.0.html',
				'<p onclick="x()">=?utf-8?b?SGk=?=</p>'
			),
		);
		return $cases;
	}

	/**
	 * @dataProvider hostile_inputs
	 * @param array $mail   wp_mail() arguments and set-up (see hostile_inputs()).
	 * @param array $expect What must happen.
	 */
	public function test_hostile_input( array $mail, array $expect ): void {
		$args = $this->prepare( $mail );

		$result = wp_mail( ...$args );

		if ( 'kept' === $expect[0] ) {
			$this->assertSame( array(), array_map( 'strval', array_map( array( $this, 'message_of' ), $this->failures ) ) );
			$this->assertTrue( $result );
			$batches = $this->flush_batches();
			$this->assertCount( 1, $batches );
			$this->assertSame( $expect[2], self::value_at( $batches[0], $expect[1] ), $expect[1] );
			return;
		}
		list( , $reason, $field, $mentions ) = $expect;
		$this->assertFalse( $result, 'wp_mail() reports the refusal' );
		$this->assertCount( 1, $this->failures, 'one wp_mail_failed' );
		$error = $this->failures[0];
		$this->assertSame( 'wp_mail_failed', $error->get_error_code() );
		$this->assertSame( $reason, $error->get_error_data()['postbag_reason'], $error->get_error_message() );
		$this->assertSame( $field, $error->get_error_data()['postbag_field'] ?? null, $error->get_error_message() );
		$this->assertStringContainsString( $mentions, $error->get_error_message() );
		$this->assertSame( 0, $this->plugin->queue()->count(), 'nothing queued' );
		$this->assertSame( array(), Postbag_Test_Mailer::current()->sent, 'nothing sent through core instead' );
	}

	/** The table is as large as the issue asks. */
	public function test_the_table_has_at_least_a_hundred_cases(): void {
		$this->assertGreaterThanOrEqual( 100, count( $this->hostile_inputs() ) );
	}

	/**
	 * Makes the case's files, filters and settings; returns wp_mail()'s arguments.
	 */
	private function prepare( array $mail ): array {
		if ( isset( $mail['settings'] ) ) {
			$this->use_settings( $mail['settings'] );
		}
		foreach ( $mail['filters'] ?? array() as $hook => $value ) {
			add_filter(
				$hook,
				static function () use ( $value ) {
					return $value;
				}
			);
		}
		foreach ( $mail['files'] ?? array() as $name => $contents ) {
			if ( is_int( $contents ) ) {
				// Sized without being written: a sparse file (oversized ones are never read).
				$handle = fopen( $this->temp_dir . '/' . $name, 'wb' );
				ftruncate( $handle, $contents );
				fclose( $handle );
			} else {
				$this->temp_file( $name, $contents );
			}
		}
		$attachments = $mail['attachments'] ?? array();
		$attachments = is_array( $attachments )
			? array_map( array( $this, 'in_temp_dir' ), $attachments )
			: $this->in_temp_dir( $attachments );
		return array(
			$mail['to'] ?? array( 'a@example.net', self::MARKER ),
			$mail['subject'] ?? 'Hi',
			$mail['message'] ?? 'Body',
			$mail['headers'] ?? array(),
			$attachments,
		);
	}

	/**
	 * @param string $path A path with `{dir}` for the test's directory.
	 */
	private function in_temp_dir( string $path ): string {
		return str_replace( '{dir}', $this->temp_dir, $path );
	}

	/**
	 * @param WP_Error $error A failure.
	 */
	private function message_of( WP_Error $error ): string {
		return $error->get_error_message();
	}

	/**
	 * A value in a decoded batch by a dotted path, e.g. `emails.0.subject`.
	 *
	 * @return mixed
	 */
	private static function value_at( array $batch, string $path ) {
		$value = $batch;
		foreach ( explode( '.', $path ) as $step ) {
			$value = $value[ $step ] ?? null;
		}
		return $value;
	}
}
