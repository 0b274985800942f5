<?php
/**
 * Autoloader for the test harness's own classes (`Postbag_Test_*`), shared by
 * the PHPUnit bootstrap and the benchmarks under bench/.
 *
 * @package Postbag\Tests
 */

spl_autoload_register(
	static function ( string $class_name ): void {
		if ( 0 !== strpos( $class_name, 'Postbag_Test_' ) ) {
			return;
		}
		$file = __DIR__ . '/class-' . strtolower( str_replace( '_', '-', $class_name ) ) . '.php';
		if ( is_file( $file ) ) {
			require $file;
		}
	}
);
