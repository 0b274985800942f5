<?php
/**
 * A PHPMailer that records instead of sending.
 *
 * @package Postbag\Tests
 */

require_once ABSPATH . WPINC . '/PHPMailer/PHPMailer.php';
require_once ABSPATH . WPINC . '/PHPMailer/SMTP.php';
require_once ABSPATH . WPINC . '/PHPMailer/Exception.php';

/**
 * Installed as `$GLOBALS['phpmailer']`, which core's wp_mail() reuses: every
 * mail that reaches core is built exactly as it would be sent (preSend()
 * runs, so bad addresses still fail) and then recorded.
 */
class Postbag_Test_Mailer extends PHPMailer\PHPMailer\PHPMailer {

	/** @var array<int, array<string, mixed>> Mails core sent, oldest first. */
	public $sent = array();

	public static function install(): self {
		$mailer               = new self( true );
		$GLOBALS['phpmailer'] = $mailer;
		return $mailer;
	}

	/**
	 * The installed recorder (re-installed if a test replaced it).
	 */
	public static function current(): self {
		return $GLOBALS['phpmailer'] instanceof self ? $GLOBALS['phpmailer'] : self::install();
	}

	/**
	 * Builds the message like a real send, then records it.
	 *
	 * @return bool
	 */
	public function send() {
		if ( ! $this->preSend() ) {
			return false;
		}
		$this->sent[] = array(
			'to'           => $this->getToAddresses(),
			'cc'           => $this->getCcAddresses(),
			'bcc'          => $this->getBccAddresses(),
			'from'         => $this->From,
			'subject'      => $this->Subject,
			'body'         => $this->Body,
			'content_type' => $this->ContentType,
			'attachments'  => $this->getAttachments(),
			'mime'         => $this->getSentMIMEMessage(),
		);
		return true;
	}
}
