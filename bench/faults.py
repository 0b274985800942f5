"""The fault suite as a table: N mails under each fault, what SES accepted per mail.

The scenarios are ``tests/support/faults.py`` (``tests/functional/test_faults.py``
asserts them at 500 mails): SES answers lost after it took the mail, SES calls
hung past the deadline margin, a DynamoDB outage during completion writes then
the same event again, DynamoDB throttling, a real sender process SIGKILLed
mid-batch then replayed, and every event delivered twice at once to two
processes. Nothing leaves 127.0.0.1.

    .venv/bin/python bench/faults.py [--mails 500]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT / "tests"), str(ROOT)]
# The table is the output: the sender's JSON logs and metrics stay quiet.
os.environ.update({"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"})

from support.faults import SCENARIOS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=500)
    args = parser.parse_args()
    print(f"{'scenario':<62} {'mails':>6} {'accepted':>8} {'dup':>4} {'lost':>4} "
          f"{'invocations':>11} {'seconds':>7}")
    bad = 0
    for scenario in SCENARIOS:
        started = time.monotonic()
        row = scenario(args.mails)
        bad += row.duplicates + row.lost
        print(f"{row.scenario:<62} {row.mails:>6} {row.accepted:>8} {row.duplicates:>4} "
              f"{row.lost:>4} {row.invocations:>11} {time.monotonic() - started:>7.1f}",
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
