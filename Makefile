# Two commands for a newcomer: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The PHP half: the CLI and PHPUnit, plus a real WordPress, MariaDB and the
# extensions the plugin and its integration tests use (php-fpm: the page must
# answer before the upload, which only FastCGI can show; nginx: the production
# stack bench/notify.php measures, which Postbag_NginxTest keeps working).
PHP_PACKAGES := php-cli phpunit php-curl php-mbstring php-xml php-mysql php-fpm nginx wordpress mariadb-server
# The browser tests: a headless Chromium driven by Selenium (PyPI), offline.
BROWSER_PACKAGES := chromium chromium-driver
# Their bounds: the whole suite in 5 minutes; Chromium's renderers and JS heap are capped in tests/browser/conftest.py.
BROWSER_TIMEOUT := 300

.PHONY: demo test test-python test-php test-browser venv php-deps lint bench bench-fanout plugin-zip clean

$(STAMP): requirements.txt chalice_app/requirements.txt pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { bash tools/need-debian-packages.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -e .
	@touch $@

venv: $(STAMP)

# The PHP half too: the demo's last part goes through a real WordPress (PHP-FPM, nginx, MariaDB).
demo: venv php-deps
	$(PY) -m standin.demo

test: lint test-python test-php test-browser

test-python: venv
	$(PY) -m pytest

test-php: venv php-deps
	PATH="$(abspath $(VENV))/bin:$$PATH" phpunit --configuration tests/php/phpunit.xml

# A real WordPress (PHP-FPM, nginx, MariaDB, the local stand-in) in a headless Chromium:
# log in, every Postbag tab, a test mail, a resend, Site Health; screenshots in
# tests/browser/artifacts/ (or $$ARTIFACTS_DIR).
test-browser: venv php-deps
	@bash tools/need-debian-packages.sh $(BROWSER_PACKAGES)
	timeout $(BROWSER_TIMEOUT) $(PY) -m pytest tests/browser -p no:cacheprovider

php-deps:
	@bash tools/need-debian-packages.sh $(PHP_PACKAGES)

# ruff for style and complexity; mypy (settings in pyproject.toml) for the Lambda and the operator's tool.
lint: venv
	$(VENV)/bin/ruff check chalice_app postbag standin tests bench
	$(VENV)/bin/mypy

bench: venv php-deps bench-fanout
	$(PY) bench/sender.py
	$(PY) bench/throughput.py
	php bench/enqueue.php
	php bench/notify.php

# Notify jobs: CPU per personalised mail (SES taken in-process, then through the
# sender's SES clients to a fake SES), 100,000 recipients end to end on the
# stand-in (several minutes; it rewrites bench/fanout-measured.json), and the
# cost model of a million recipients from what that run measured.
bench-fanout: venv
	$(PY) bench/fanout.py cpu
	$(PY) bench/fanout.py cpu-sdk
	$(PY) bench/fanout.py e2e
	$(PY) bench/fanout.py model

# The plugin as WordPress's "Upload Plugin" screen wants it: one top folder named postbag/.
# The standard library's zipfile is all it takes: no venv.
plugin-zip:
	rm -rf build/zip dist/postbag.zip && mkdir -p build/zip dist
	ln -s ../../wp-plugin build/zip/postbag
	cd build/zip && $(PYTHON) -m zipfile -c ../../dist/postbag.zip postbag/
	@echo "dist/postbag.zip"

clean:
	rm -rf $(VENV) outbox build dist .pytest_cache
