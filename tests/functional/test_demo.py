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
        check=True,
    )
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
    # A notification held 20 s on the sender's side, released by the ticked drainer on time.
    assert re.search(r"^job \S+ uploaded: state scheduled, send_at \S+Z$", done.stdout, re.M)
    assert "check: held until due and sent on time, each once" in done.stdout
    # Through WordPress: one request's mails and job, each sent, the page's time printed.
    assert re.search(r"^the page answered in \d+ ms: \{\"mails\": 3, \"job\": ", done.stdout, re.M)
    table = re.findall(r"^(editor\d@example\.net) +Editor \d: your post is live +sent +(\S+)$",
                       done.stdout, re.M)
    assert [to for to, _ in table] == ["editor1@example.net", "editor2@example.net",
                                       "editor3@example.net"] and all(mid for _, mid in table)
    assert "check: 1,000 subscribers, 1,000 mails, each once" in done.stdout
