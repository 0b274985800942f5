"""The Postbag plugin as a site owner sees it, in a real browser against a real WordPress.

In order (one site, one browser): log in; every Postbag tab opens without
PHP notices or JavaScript errors, with a label on every form control; a test
mail sent with the keyboard only arrives; a failed mail is resent once its
cause is fixed; a notify job held until tomorrow is rescheduled, then cancelled,
from the Scheduled tab, and the sender applies both; Site Health turns red while
the bucket is unreachable (last: it stops the stand-in).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser.harness import UNVERIFIED_DOMAIN, Sender, Site, wait_for

TABS = ["overview", "log", "jobs", "scheduled", "suppressions", "actions"]
TEST_STATUS = "postbag-test-status"
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # A datetime-local input's value.
# What PHP prints on a page with WP_DEBUG_DISPLAY on.
PHP_MESSAGES = ("Warning:", "Notice:", "Deprecated:", "Fatal error:", "Parse error:")
# Form controls without a visible label need aria-label / aria-labelledby / title.
UNLABELLED_CONTROLS_JS = """
return Array.from(document.querySelectorAll(
    '#wpbody-content input, #wpbody-content select, #wpbody-content textarea'))
  .filter(el => !['hidden', 'submit', 'button', 'reset', 'image'].includes(el.type))
  .filter(el => el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !el.getAttribute('title'))
  .map(el => el.outerHTML.slice(0, 200));
"""


def _screen(browser: WebDriver, site: Site, tab: str) -> None:
    browser.get(site.admin(f"admin.php?page=postbag&tab={tab}"))


def _console_errors(browser: WebDriver, site: Site) -> list[str]:
    """The page's JavaScript errors and failed loads from the site itself (offline, the
    browser's own favicon request and Gravatar's avatars fail too: not the page's fault)."""
    return [
        entry["message"] for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and f"//{site.host}/" in entry["message"]
        and "/favicon.ico" not in entry["message"]
    ]


def _php_messages(browser: WebDriver) -> list[str]:
    text = browser.find_element(By.TAG_NAME, "body").text
    return [line for line in text.splitlines() if line.startswith(PHP_MESSAGES)]


def _by_id(browser: WebDriver, element_id: str) -> WebElement:
    return browser.find_element(By.ID, element_id)


# What chromium's DevTools answer for a node of a document being torn down: the first
# seen in CI, the second DOM.resolveNode's wording of the same.
_TORN_DOWN = ("Node with given id does not exist", "No node with given id found")


def _gone(element: WebElement) -> bool:
    """Whether ``element``'s page has been replaced. Selenium's ``staleness_of`` waits for
    a stale-element error alone; chromium answers one of ``_TORN_DOWN`` instead while
    the old document is being torn down."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if any(answer in str(exc.msg) for answer in _TORN_DOWN):
            return True
        raise
    return False


def _follow(browser: WebDriver, element: WebElement) -> None:
    """Clicks a link or submit button and waits until its page replaced this one
    (click() returns before a form's post and redirect are over)."""
    element.click()
    WebDriverWait(browser, 30).until(lambda _: _gone(element))
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def test_log_in(browser: WebDriver, site: Site) -> None:
    browser.get(site.page("wp-login.php"))
    _by_id(browser, "user_login").send_keys(site.user)
    _by_id(browser, "user_pass").send_keys(site.password)
    _follow(browser, _by_id(browser, "wp-submit"))

    assert wait_for(lambda: browser.find_elements(By.ID, "wpadminbar"), 30), browser.title
    assert "wp-admin" in browser.current_url


@pytest.mark.parametrize("tab", TABS)
def test_every_tab_opens_cleanly_with_labelled_controls(
    browser: WebDriver, site: Site, tab: str
) -> None:
    browser.get_log("browser")  # Drop what earlier pages logged.

    _screen(browser, site, tab)

    assert browser.find_elements(By.ID, "postbag-screen"), f"no Postbag screen for tab {tab}"
    assert _by_id(browser, f"postbag-tab-{tab}").get_attribute("aria-current") == "page"
    assert _php_messages(browser) == []
    assert _console_errors(browser, site) == []
    assert browser.execute_script(UNLABELLED_CONTROLS_JS) == [], "form controls without a label"


def _tab_until(browser: WebDriver, element_id: str, limit: int = 200) -> bool:
    """Presses Tab from the top of the page until ``element_id`` has the focus."""
    body = browser.find_element(By.TAG_NAME, "body")
    body.click()
    for _ in range(limit):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.get_attribute("id") == element_id:
            return True
    return False


def _ses_messages(site: Site, needle: str) -> int:
    """Mails SES (moto) accepted whose stored message mentions ``needle``."""
    with urllib.request.urlopen(site.endpoint + "/moto-api/data.json", timeout=10) as response:
        ses = json.load(response)["ses"]
    messages = ses.get("Message", []) + ses.get("RawMessage", [])
    return sum(needle in json.dumps(message) for message in messages)


def _ses_sent_to(site: Site, address: str) -> bool:
    return _ses_messages(site, address) > 0


def test_a_test_mail_sent_with_the_keyboard_arrives(
    browser: WebDriver, site: Site, sender: Sender
) -> None:
    _screen(browser, site, "actions")

    assert _tab_until(browser, "postbag-test-to"), "the recipient field is not reachable with Tab"
    field = browser.switch_to.active_element
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("keyboard-test@example.net")
    field.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "postbag-send-test"
    browser.switch_to.active_element.send_keys(Keys.ENTER)

    sent = f"#{TEST_STATUS}[data-status='sent']"
    status = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, sent), 90)
    shown = [e.get_attribute("data-status") for e in browser.find_elements(By.ID, TEST_STATUS)]
    assert status, f"the test mail's status: {shown}; sender errors: {sender.errors}"
    assert _ses_sent_to(site, "keyboard-test@example.net")


def _log_rows(browser: WebDriver, site: Site, subject: str) -> list[str]:
    """Statuses of the email log's rows about ``subject``, after a sync with the bucket."""
    _screen(browser, site, "actions")
    _follow(browser, _by_id(browser, "postbag-sync"))
    browser.get(site.admin(f"admin.php?page=postbag&tab=log&s={subject.replace(' ', '+')}"))
    return [
        row.get_attribute("data-status") or ""
        for row in browser.find_elements(By.CSS_SELECTOR, ".postbag-log-row")
        if subject in row.text
    ]


def test_a_failed_mail_is_resent_once_its_cause_is_fixed(
    browser: WebDriver, site: Site, sender: Sender
) -> None:
    browser.get(site.page("postbag-test/send-failing-mail.php"))
    sent = json.loads(browser.find_element(By.TAG_NAME, "body").text)
    assert sent["queued"] is True
    subject = sent["subject"]

    assert wait_for(lambda: "failed" in _log_rows(browser, site, subject), 60, 2), sender.errors
    rows = browser.find_elements(By.CSS_SELECTOR, ".postbag-log-row[data-status='failed']")
    failed = [row for row in rows if subject in row.text]
    _follow(browser, failed[0].find_element(By.CSS_SELECTOR, ".postbag-log-detail-link"))
    assert UNVERIFIED_DOMAIN in _by_id(browser, "postbag-detail-reason").text

    assert _ses_messages(site, subject) == 0, "refused by SES: never sent"
    sender.verify(UNVERIFIED_DOMAIN)  # The cause, fixed.
    _follow(browser, _by_id(browser, "postbag-resend"))
    assert "send it again" in _by_id(browser, "postbag-notice").text

    requests = "requests/redrive/"
    assert wait_for(lambda: "sent" in _log_rows(browser, site, subject), 90, 2), (
        f"resent mail not sent; redrive requests: {sender.keys(requests)}, "
        f"a handler for them: {sender.handles(requests + 'x.json')}; errors: {sender.errors}"
    )
    assert sender.keys(requests) == [], "the one request was handled"
    assert len(sender.keys("status/redrive/")) == 1, "one request, one result: nothing asked twice"
    time.sleep(3)  # Whatever a second re-drive would send arrives in well under this.
    assert "sent" in _log_rows(browser, site, subject), "settled: the resend is not retried"
    assert _ses_messages(site, subject) == 1, "exactly one more mail: sent once, not twice"


def _control_result(sender: Sender, job_id: str, request: str) -> dict[str, Any] | None:
    """The sender's ``status/control/jobs/<id>.json`` once it answers ``request``."""
    key = f"status/control/jobs/{job_id}.json"
    if key not in sender.keys(key):
        return None
    doc: dict[str, Any] = json.loads(sender.body(key))
    return doc if doc["request"] == request else None


def _scheduled_row(browser: WebDriver, site: Site, job_id: str) -> WebElement:
    _screen(browser, site, "scheduled")
    return browser.find_element(By.CSS_SELECTOR, f".postbag-scheduled-row[data-id='{job_id}']")


def test_a_held_job_is_rescheduled_then_cancelled_from_the_scheduled_tab(
    browser: WebDriver, site: Site, sender: Sender
) -> None:
    browser.get(site.page("postbag-test/schedule-job.php"))
    made = json.loads(browser.find_element(By.TAG_NAME, "body").text)
    job_id = made["job"]
    assert job_id, made["error"]
    manifest = f"jobs/{job_id}/manifest.json"
    assert wait_for(lambda: sender.keys(manifest), 30), "uploaded after the response"

    row = _scheduled_row(browser, site, job_id)
    assert row.get_attribute("data-state") == "scheduled"
    assert made["subject"] in row.text and "Notification job" in row.text
    assert browser.execute_script(UNLABELLED_CONTROLS_JS) == [], "its forms' controls, labelled"
    assert _php_messages(browser) == []
    when = row.find_element(By.CSS_SELECTOR, ".postbag-scheduled-when time")
    assert (when.get_attribute("title") or "").endswith(" UTC")

    # Chromium's datetime-local takes typed digits in the locale's order: set it as its
    # picker would, a day and a half hour later than shown (the site's time zone).
    field = _by_id(browser, f"postbag-send-at-job-{job_id}")
    shown = datetime.strptime(field.get_attribute("value") or "", LOCAL_INPUT)
    later = shown + timedelta(days=1, minutes=90)
    browser.execute_script("arguments[0].value = arguments[1]", field, later.strftime(LOCAL_INPUT))
    _follow(browser, _by_id(browser, f"postbag-reschedule-submit-job-{job_id}"))

    assert "Reschedule requested" in _by_id(browser, "postbag-notice").text
    row = browser.find_element(By.CSS_SELECTOR, f".postbag-scheduled-row[data-id='{job_id}']")
    assert row.get_attribute("data-state") == "moved"
    moved_to = row.find_element(By.CSS_SELECTOR, ".postbag-scheduled-when time").get_attribute(
        "datetime"
    )
    assert later.strftime("%Y-%m-%d") in row.text and later.strftime("%H:%M") in row.text, row.text
    assert sender.keys(f"jobs/{job_id}/schedule.json")
    moved = wait_for(lambda: _control_result(sender, job_id, "reschedule"), 60)
    assert moved, f"no result for the move: {sender.keys('status/control/')}; {sender.errors}"
    assert (moved["outcome"], moved["send_at"]) == ("rescheduled", moved_to)

    _follow(browser, _by_id(browser, f"postbag-scheduled-cancel-job-{job_id}"))

    assert "Cancel requested" in _by_id(browser, "postbag-notice").text
    row = browser.find_element(By.CSS_SELECTOR, f".postbag-scheduled-row[data-id='{job_id}']")
    assert row.get_attribute("data-state") == "cancel_requested"
    assert sender.keys(f"jobs/{job_id}/cancel")
    cancelled = wait_for(lambda: _control_result(sender, job_id, "cancel"), 60)
    assert cancelled, f"no result for the cancel: {sender.keys('status/control/')}; {sender.errors}"
    assert cancelled["outcome"] == "cancelled"

    def settled() -> bool:
        _screen(browser, site, "actions")
        _follow(browser, _by_id(browser, "postbag-sync"))
        return _scheduled_row(browser, site, job_id).get_attribute("data-state") == "cancelled"

    assert wait_for(settled, 60, 2), "the email log reads the sender's word: cancelled"
    row = _scheduled_row(browser, site, job_id)
    assert not row.find_elements(By.CSS_SELECTOR, "button"), "nothing left to do"
    assert _ses_messages(site, made["subject"]) == 0, "a cancelled job sends nothing"


def test_site_health_turns_red_while_the_bucket_is_unreachable(
    browser: WebDriver, site: Site
) -> None:
    browser.get(site.admin("site-health.php"))
    assert wait_for(lambda: "Postbag's bucket answers" in browser.page_source, 60)

    os.kill(site.pids["aws"], signal.SIGTERM)  # The bucket's endpoint now refuses connections.
    # What a minute does to the probe's cached answer.
    site.sql("DELETE FROM wp_options WHERE option_name LIKE '%postbag_bucket_probe%'")
    browser.get(site.admin("site-health.php"))

    assert wait_for(lambda: "Postbag cannot reach its bucket" in browser.page_source, 60)
    critical = browser.find_element(By.ID, "health-check-site-status-critical")
    assert "Postbag cannot reach its bucket" in critical.get_attribute("innerHTML")
    browser.execute_script("arguments[0].scrollIntoView()", critical)


def test_no_php_errors_were_logged(site: Site) -> None:
    log = Path(site.php_errors)
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    assert [line for line in lines if "postbag" in line.lower()] == []
