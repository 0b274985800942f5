<?php
/**
 * wp-cron.php for the site served through nginx, as a system cron or
 * WordPress's loopback would request it: runs the WP-Cron events that are
 * due (notify jobs' continuations among them) after the response. Settings
 * and `?report=<name>`: see nginx-boot.php.
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/nginx-boot.php';
require ABSPATH . 'wp-cron.php';
