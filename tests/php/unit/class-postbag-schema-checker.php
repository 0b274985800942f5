<?php
/**
 * A small JSON Schema (draft 7) checker for the batch schema.
 *
 * @package Postbag\Tests
 */

/**
 * Checks a decoded JSON document against the keywords the batch schema uses
 * (type, const, enum, required, properties, additionalProperties,
 * propertyNames, maxProperties, items, minItems, minLength, maxLength,
 * pattern, minimum, format date-time, anyOf, oneOf, $ref). The contract
 * tests run the Python sender's own validator; this one gives unit tests a
 * fast first check of the same file. Unknown keywords fail loudly.
 */
final class Postbag_Schema_Checker {

	const KNOWN = array( '$schema', '$id', 'title', 'description', 'definitions', '$ref', 'type', 'const', 'enum', 'required', 'properties', 'additionalProperties', 'propertyNames', 'maxProperties', 'items', 'minItems', 'maxItems', 'minLength', 'maxLength', 'pattern', 'minimum', 'format', 'anyOf', 'oneOf' );

	/** @var array The schema, decoded as arrays. */
	private $schema;

	/**
	 * @param string $file Schema file.
	 */
	public function __construct( string $file ) {
		$this->schema = json_decode( (string) file_get_contents( $file ), true, 512, JSON_THROW_ON_ERROR );
	}

	/**
	 * @param string $json Document.
	 * @return string[] Errors, empty when valid.
	 */
	public function errors( string $json ): array {
		$errors = array();
		$this->check( json_decode( $json, false, 512, JSON_THROW_ON_ERROR ), $this->schema, '$', $errors );
		return $errors;
	}

	/**
	 * @param mixed    $value  Decoded value (objects as stdClass).
	 * @param array    $schema Schema for it.
	 * @param string   $path   Where it is, for messages.
	 * @param string[] $errors Collected errors.
	 */
	private function check( $value, array $schema, string $path, array &$errors ): void {
		$unknown = array_diff( array_keys( $schema ), self::KNOWN );
		if ( $unknown ) {
			throw new LogicException( 'Schema keyword not supported by the checker: ' . implode( ', ', $unknown ) );
		}
		if ( isset( $schema['$ref'] ) ) {
			$this->check( $value, $this->schema['definitions'][ substr( $schema['$ref'], strlen( '#/definitions/' ) ) ], $path, $errors );
		}
		if ( array_key_exists( 'const', $schema ) && $value !== $schema['const'] ) {
			$errors[] = "$path: must be " . json_encode( $schema['const'] );
		}
		if ( isset( $schema['enum'] ) && ! in_array( $value, $schema['enum'], true ) ) {
			$errors[] = "$path: not one of " . implode( ', ', $schema['enum'] );
		}
		$types = (array) ( $schema['type'] ?? array() );
		if ( $types && ! array_filter( $types, static fn( string $type ): bool => self::has_type( $value, $type ) ) ) {
			$errors[] = "$path: must be of type " . implode( ' or ', $types );
			return;
		}
		if ( $value instanceof stdClass ) {
			$this->check_object( $value, $schema, $path, $errors );
		} elseif ( is_array( $value ) ) {
			if ( count( $value ) < ( $schema['minItems'] ?? 0 ) ) {
				$errors[] = "$path: fewer than {$schema['minItems']} items";
			}
			if ( count( $value ) > ( $schema['maxItems'] ?? PHP_INT_MAX ) ) {
				$errors[] = "$path: more than {$schema['maxItems']} items";
			}
			foreach ( isset( $schema['items'] ) ? $value : array() as $i => $item ) {
				$this->check( $item, $schema['items'], "{$path}[$i]", $errors );
			}
		} elseif ( is_string( $value ) ) {
			$this->check_string( $value, $schema, $path, $errors );
		} elseif ( is_int( $value ) && isset( $schema['minimum'] ) && $value < $schema['minimum'] ) {
			$errors[] = "$path: below {$schema['minimum']}";
		}
		if ( isset( $schema['anyOf'] ) && ! $this->matches( $value, $schema['anyOf'], $path ) ) {
			$errors[] = "$path: matches none of anyOf";
		}
		if ( isset( $schema['oneOf'] ) && 1 !== $this->matches( $value, $schema['oneOf'], $path ) ) {
			$errors[] = "$path: must match exactly one of oneOf";
		}
	}

	/**
	 * @param stdClass $value  Object.
	 * @param array    $schema Schema.
	 * @param string   $path   Where.
	 * @param string[] $errors Collected errors.
	 */
	private function check_object( stdClass $value, array $schema, string $path, array &$errors ): void {
		$properties = get_object_vars( $value );
		foreach ( $schema['required'] ?? array() as $name ) {
			if ( ! array_key_exists( $name, $properties ) ) {
				$errors[] = "$path: missing $name";
			}
		}
		if ( count( $properties ) > ( $schema['maxProperties'] ?? PHP_INT_MAX ) ) {
			$errors[] = "$path: too many properties";
		}
		foreach ( $properties as $name => $property ) {
			if ( isset( $schema['propertyNames'] ) ) {
				$this->check( (string) $name, $schema['propertyNames'], "$path.$name(name)", $errors );
			}
			if ( isset( $schema['properties'][ $name ] ) ) {
				$this->check( $property, $schema['properties'][ $name ], "$path.$name", $errors );
			} elseif ( false === ( $schema['additionalProperties'] ?? true ) ) {
				$errors[] = "$path: unexpected property $name";
			} elseif ( is_array( $schema['additionalProperties'] ?? null ) ) {
				$this->check( $property, $schema['additionalProperties'], "$path.$name", $errors );
			}
		}
	}

	/**
	 * @param string   $value  String.
	 * @param array    $schema Schema.
	 * @param string   $path   Where.
	 * @param string[] $errors Collected errors.
	 */
	private function check_string( string $value, array $schema, string $path, array &$errors ): void {
		$length = mb_strlen( $value, 'UTF-8' );
		if ( $length < ( $schema['minLength'] ?? 0 ) || $length > ( $schema['maxLength'] ?? PHP_INT_MAX ) ) {
			$errors[] = "$path: length $length out of bounds";
		}
		if ( isset( $schema['pattern'] ) && ! preg_match( '/' . str_replace( '/', '\/', $schema['pattern'] ) . '/u', $value ) ) {
			$errors[] = "$path: does not match {$schema['pattern']}";
		}
		if ( 'date-time' === ( $schema['format'] ?? '' ) && ! preg_match( '/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i', $value ) ) {
			$errors[] = "$path: not an RFC 3339 date-time";
		}
	}

	/**
	 * @param mixed   $value   Value.
	 * @param array[] $schemas Alternatives.
	 * @param string  $path    Where.
	 * @return int How many alternatives it matches.
	 */
	private function matches( $value, array $schemas, string $path ): int {
		$count = 0;
		foreach ( $schemas as $schema ) {
			$errors = array();
			$this->check( $value, $schema, $path, $errors );
			$count += $errors ? 0 : 1;
		}
		return $count;
	}

	/**
	 * @param mixed  $value Value.
	 * @param string $type  JSON Schema type.
	 */
	private static function has_type( $value, string $type ): bool {
		switch ( $type ) {
			case 'object':
				return $value instanceof stdClass;
			case 'array':
				return is_array( $value );
			case 'string':
				return is_string( $value );
			case 'integer':
				return is_int( $value );
			case 'null':
				return null === $value;
			default:
				throw new LogicException( "Type not supported by the checker: $type" );
		}
	}
}
