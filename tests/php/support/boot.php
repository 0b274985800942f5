<?php
/**
 * Boots a throwaway WordPress with the Postbag plugin active. Require it from
 * global scope (WordPress defines its globals there): the PHPUnit bootstrap
 * and bench/ scripts do. MariaDB is stopped and the temporary directory
 * removed when PHP shuts down.
 *
 * @package Postbag\Tests
 */

require_once __DIR__ . '/autoload.php';

// PHPUnit includes its bootstrap from inside a method: the config's
// $table_prefix must be global before wp-settings.php reads it as one.
global $table_prefix;

require Postbag_Test_WordPress::prepare();
require ABSPATH . 'wp-settings.php';
Postbag_Test_WordPress::loaded();
