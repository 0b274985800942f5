<?php
/**
 * PHPUnit bootstrap: a real WordPress 6.1 (Debian's) on a throwaway MariaDB,
 * the plugin active, PHPMailer replaced by a recorder. See support/.
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/support/boot.php';
