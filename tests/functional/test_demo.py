"""`make demo` works: the whole sender against moto's server, as a newcomer runs it."""

from __future__ import annotations

import email
import subprocess
import sys
from email import policy

from conftest import ROOT


def test_demo_delivers_every_example_and_quarantines_the_broken_one():
    done = subprocess.run(
        [sys.executable, "-m", "standin.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "7 mails delivered" in done.stdout
    assert "quarantined queue/cut-short.json: field (file)" in done.stdout
    outbox = sorted((ROOT / "outbox").glob("*.eml"))
    assert len(outbox) == 7
    raw = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in outbox]
    attachments = [a.get_filename() for m in raw for a in m.iter_attachments()]
    assert sorted(attachments) == ["notes.txt", "notes.txt", "pixel.png"]
