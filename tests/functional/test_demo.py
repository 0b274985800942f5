"""`make demo` works: the whole sender against moto's server, as a newcomer runs it."""

from __future__ import annotations

import email
import json
import re
import subprocess
import sys
from email import policy

from conftest import ROOT


def test_demo_delivers_every_example_quarantines_the_broken_one_and_runs_a_job():
    done = subprocess.run(
        [sys.executable, "-m", "standin.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # The demo's own checks print what went wrong: show them rather than an exit status.
    assert done.returncode == 0, (done.stdout[-6000:], done.stderr[-3000:])
    assert "7 mails delivered" in done.stdout
    # "ok" only for what went out: the broken batch is said to be quarantined, and why.
    assert "event for queue/cut-short.json: quarantined: field (file)" in done.stdout
    assert "event for queue/cut-short.json: ok" not in done.stdout
    assert done.stdout.count(": ok\n") == 5  # the other five example batches
    outbox = sorted((ROOT / "outbox").glob("*.eml"))
    assert len(outbox) == 7
    raw = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in outbox]
    attachments = [a.get_filename() for m in raw for a in m.iter_attachments()]
    assert sorted(attachments) == ["notes.txt", "notes.txt", "pixel.png"]
    # The notify job: every recipient's own mail, each sent once, the job done.
    assert "check: 1,000 recipients, 1,000 mails, each once" in done.stdout
    status = json.loads(re.search(r"^status.json: (\{.*?^\})", done.stdout, re.M | re.S)[1])
    assert (status["state"], status["recipients"], status["sent"], status["failed"]) \
        == ("done", 1000, 1000, 0)
    mails = re.findall(r"^To: Reader (\d+) <reader-0*(\d+)@example\.net>\n"
                       r"Subject: Reader (\d+), a new post: .*\n    Hi Reader (\d+),$",
                       done.stdout, re.M)
    assert len(mails) == 3 and all(len(set(numbers)) == 1 for numbers in mails)
    # Each mail's Send event (the ledger's evidence) and its Delivery (the stand-in's SES).
    assert ("the job's SES events (Send, then Delivery) delivered to on_ses_event as they "
            "came: 2,000") in done.stdout
    # A bounce, a complaint and an unsubscribe through the stand-in: skipped on the next send.
    assert "send 2: {'suppressed': 3, 'sent': 1}; SES got mail for ok@example.net" in done.stdout
    assert "check: suppressed addresses skipped, none failed" in done.stdout
    # Through WordPress: one request's mails and job, each sent; the page answers at once
    # (the site's first request, which fills PHP-FPM's opcache, is printed apart).
    assert re.search(r"^the site's first request \(a REST call; .*\): \d+ ms$", done.stdout, re.M)
    page_ms = re.search(r"^the page answered in (\d+) ms: \{\"mails\": 3, \"job\": ",
                        done.stdout, re.M)
    assert page_ms and int(page_ms[1]) < 1000
    table = re.findall(r"^(editor\d@example\.net) +Editor \d: your post is live +sent +(\S+)$",
                       done.stdout, re.M)
    assert [to for to, _ in table] == ["editor1@example.net", "editor2@example.net",
                                       "editor3@example.net"] and all(mid for _, mid in table)
    assert "check: 1,000 subscribers, 1,000 mails, each once" in done.stdout
    _scheduled_from_wordpress(done.stdout)


def _scheduled_from_wordpress(out: str) -> None:
    """The site schedules a reminder, a windowed digest and an announcement, lists them
    through its REST API, cancels the announcement there; each comes out as it should."""
    waiting = out.split("waiting (GET postbag/v1/scheduled, as the site's admin):\n")[1]
    rows = re.findall(r"^  (batch|job) +(\S+) +(\w+) +(\S+Z)( \.\. \S+Z)?$",
                      waiting.split("\nPOST ")[0], re.M)
    assert [(kind, state, bool(end)) for kind, _, state, _, end in rows] == [
        ("batch", "scheduled", False), ("job", "scheduled", True), ("job", "scheduled", False)]
    announcement = rows[2][1]
    assert f'POST postbag/v1/jobs/{announcement}/cancel: {{"cancelled": true}}' in out
    after = out.split("after the cancel and the reminder (GET postbag/v1/scheduled):\n")[1]
    assert re.search(rf"^  batch +{rows[0][1]} +due ", after, re.M)
    assert re.search(rf"^  job +{announcement} +cancelled ", after, re.M)
    late = re.search(r"^the reminder: released by drain_held \+\d+\.\d s after its send_at, "
                     r"\+(\d+\.\d) s after the first drainer run past it", out, re.M)
    assert late and float(late[1]) <= 5  # that run's release, and the send
    assert "the announcement: cancelled, 0 mails sent" in out
    assert "the digest: done, 1000 sent of 1000, each once" in out
    plan = re.search(r"^the digest's plan: \d+ chunks of (\d+) over (\d+) minutes", out, re.M)
    assert plan and int(plan[2]) >= 4  # the 6-minute window, less the minute it was late
    minutes = [(int(n), float(ideal)) for n, ideal in
               re.findall(r"^  minute +\d+: +(\d+) +\(ideal ([\d.]+)\)$", out, re.M)]
    assert sum(n for n, _ in minutes) == 1000 and len(minutes) == int(plan[2])
    assert all(abs(n - ideal) <= int(plan[1]) for n, ideal in minutes)
    assert "0 sent outside the window" in out
    assert "check: reminder on time, announcement sent nothing, digest spread over its window" \
        in out
