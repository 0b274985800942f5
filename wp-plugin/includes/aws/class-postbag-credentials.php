<?php
/**
 * AWS credentials as a value that keeps its secret to itself.
 *
 * @package Postbag
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

/**
 * An access key id, its secret, and for temporary credentials a session token
 * and an expiry time.
 *
 * The secret and the token never show in var_dump(), print_r(), var_export(),
 * string conversion or serialize(): the secret lives in a closure (which
 * var_export() prints as an empty Closure), __debugInfo() and __toString()
 * leave it out, and serialising is refused. (Reflection or an (array) cast
 * can still reach it: this guards against accidents, not against code that
 * runs in the same process on purpose.)
 */
final class Postbag_Credentials {

	/** @var string */
	private $access_key_id;

	/** @var Closure(): array{0: string, 1: string|null} Secret and token. */
	private $secrets;

	/** @var int|null */
	private $expires_at;

	/** @var string */
	private $source;

	/**
	 * @param string      $access_key_id     Access key id (AKIA..., ASIA...).
	 * @param string      $secret_access_key Secret access key.
	 * @param string|null $session_token     Session token of temporary credentials.
	 * @param int|null    $expires_at        Unix time the credentials expire; null if they don't.
	 * @param string      $source            Where they came from (provider name), for messages.
	 * @throws Postbag_Credentials_Exception When the key id or secret is empty.
	 */
	public function __construct(
		string $access_key_id,
		#[\SensitiveParameter] string $secret_access_key,
		#[\SensitiveParameter] ?string $session_token = null,
		?int $expires_at = null,
		string $source = ''
	) {
		if ( '' === $access_key_id || '' === $secret_access_key ) {
			throw new Postbag_Credentials_Exception( 'Credentials need both an access key id and a secret access key.' );
		}
		$session_token       = '' === $session_token ? null : $session_token;
		$this->access_key_id = $access_key_id;
		$this->secrets       = static function () use ( $secret_access_key, $session_token ): array {
			return array( $secret_access_key, $session_token );
		};
		$this->expires_at    = $expires_at;
		$this->source        = $source;
	}

	public function access_key_id(): string {
		return $this->access_key_id;
	}

	public function secret_access_key(): string {
		return ( $this->secrets )()[0];
	}

	public function session_token(): ?string {
		return ( $this->secrets )()[1];
	}

	/** Unix time of expiry, or null for long-term credentials. */
	public function expires_at(): ?int {
		return $this->expires_at;
	}

	/** Name of the provider that supplied them ('constants', 'environment', 'ecs', 'imds', ...). */
	public function source(): string {
		return $this->source;
	}

	/**
	 * Whether they expire within $margin seconds of $now (never, without an expiry).
	 *
	 * @param int $now    Unix time.
	 * @param int $margin Seconds of head room.
	 */
	public function expires_within( int $now, int $margin ): bool {
		return null !== $this->expires_at && $this->expires_at - $margin <= $now;
	}

	/** @return array<string, mixed> What var_dump() and print_r() show. */
	public function __debugInfo(): array {
		return array(
			'access_key_id'     => $this->access_key_id,
			'secret_access_key' => '[hidden]',
			'session_token'     => null === $this->session_token() ? null : '[hidden]',
			'expires_at'        => null === $this->expires_at ? null : gmdate( 'Y-m-d\TH:i:s\Z', $this->expires_at ),
			'source'            => $this->source,
		);
	}

	public function __toString(): string {
		return sprintf( 'AWS credentials %s from %s', $this->access_key_id, '' === $this->source ? 'an unnamed provider' : $this->source );
	}

	/**
	 * @throws LogicException Always: credentials must not be written anywhere.
	 */
	public function __serialize(): array {
		throw new LogicException( 'Postbag_Credentials cannot be serialized.' );
	}

	/**
	 * @param array<mixed> $data Unused.
	 * @throws LogicException Always.
	 */
	public function __unserialize( array $data ): void {
		throw new LogicException( 'Postbag_Credentials cannot be unserialized.' );
	}
}
