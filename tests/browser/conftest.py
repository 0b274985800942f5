"""A real WordPress, the local sender and a headless Chromium, for the browser tests.

``site``: ``launch-site.php`` (MariaDB, Debian's WordPress with the plugin,
PHP-FPM and nginx on 127.0.0.1, the local AWS stand-in), read from its one
JSON line and stopped at the end by closing its stdin. ``sender``: the
Lambda's batch handler run in this process on every new batch object, as S3
events would run it (moto runs no Lambda), in a thread while the tests run.
``browser``: Debian's chromium through chromedriver, headless and offline,
with blog.example.org mapped to the site's port. Each test's last page is
saved as a screenshot under ``$ARTIFACTS_DIR`` (default
``tests/browser/artifacts``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from standin.aws import stop_by_stdin
from tests.browser.harness import HERE, Sender, Site, read_line

ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR") or HERE / "artifacts")
LAUNCH_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    log = open(ARTIFACTS / "launch-site.log", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ["php", str(HERE / "launch-site.php")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    try:
        line = read_line(process, LAUNCH_TIMEOUT_S)
        if not line:
            pytest.fail(f"launch-site.php printed nothing; see {log.name}")
        yield Site(**json.loads(line))
    finally:
        stop_by_stdin(process)
        log.close()


@pytest.fixture(scope="session")
def sender(site: Site) -> Iterator[Sender]:
    with Sender(site) as running:
        yield running


@pytest.fixture(scope="session")
def browser(site: Site) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1280,1000",
        # Bounded memory: two renderers at most, a small JavaScript heap.
        "--renderer-process-limit=2",
        "--js-flags=--max-old-space-size=256",
        # The site answers as blog.example.org; nothing else resolves (offline).
        f"--host-resolver-rules=MAP {site.host} {site.url.removeprefix('http://')}, "
        "MAP * ~NOTFOUND",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def screenshot(request: pytest.FixtureRequest) -> Iterator[None]:
    """Saves the page each test ended on (failed or not) as an artifact."""
    yield
    if "browser" in request.fixturenames:
        driver: WebDriver = request.getfixturevalue("browser")
        driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}.png"))


def pytest_sessionstart(session: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
