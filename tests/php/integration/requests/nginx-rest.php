<?php
/**
 * The site's REST API behind nginx, as index.php serves it with plain
 * permalinks: `?rest_route=/postbag/v1/...` (Debian's own index.php would
 * look for /etc/wordpress/config-<host>.php instead of the test's
 * wp-config.php). See nginx-boot.php.
 *
 * @package Postbag\Tests
 */

require __DIR__ . '/nginx-boot.php';

wp(); // parse_request runs rest_api_loaded(), which serves the route and exits.
