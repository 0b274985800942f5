"""The hostile-input table through the real handler: how many cases each category
has, how many met their expected refusal, and which were mishandled.

The same cases and checks as tests/functional/test_hostile_input.py
(tests/support/hostile.py), in moto in this process, with the handler invoked by
chalice.test.Client. Exits non-zero if any case was mishandled.

    .venv/bin/python bench/hostile.py
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT), str(ROOT / "tests")]

from support.safe_env import use_safe_env  # noqa: E402

BUCKET = "postbag-hostile"
use_safe_env(bucket=BUCKET, function_name="postbag-hostile-on_batch_uploaded")

from moto import mock_aws  # noqa: E402
from support.hostile import cases, run  # noqa: E402
from support.safe_env import prepare_sender_aws  # noqa: E402


def main() -> int:
    logging.disable(logging.CRITICAL)  # the handler logs every refusal: thousands of lines
    # A quarantined batch publishes no metric, and powertools warns each time.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    import app

    table = cases()
    totals: Counter[str] = Counter()
    handled: Counter[str] = Counter()
    mishandled = []
    # The handler prints a metrics line per invocation: kept out of the table.
    with mock_aws(), contextlib.redirect_stdout(io.StringIO()):
        s3 = prepare_sender_aws(app)
        for index, case in enumerate(table):
            result = run(case, index, s3, BUCKET)
            totals[case.category] += 1
            if result.ok:
                handled[case.category] += 1
            else:
                mishandled.append(result)
    print(f"{'category':<18} {'cases':>6} {'refused as expected':>20} {'mishandled':>11}")
    for category in sorted(totals):
        print(f"{category:<18} {totals[category]:>6} {handled[category]:>20} "
              f"{totals[category] - handled[category]:>11}")
    print(f"{'all':<18} {sum(totals.values()):>6} {sum(handled.values()):>20} "
          f"{len(mishandled):>11}")
    print(f"{sum(handled.values())} of {len(table)} handled")
    for result in mishandled:
        print(f"mishandled {result.case.id}: {result.problems}")
    return 1 if mishandled else 0


if __name__ == "__main__":
    sys.exit(main())
