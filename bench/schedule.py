"""Scheduled sends: how late held items are released, and how evenly a window spreads.

    .venv/bin/python bench/schedule.py [--items 1000] [--spread 60] [--tick 1]
                                       [--recipients 30000] [--window-minutes 60]

1. **Accuracy** on the local stand-in (moto's server, ``standin.aws``): ``--items`` held
   items with due times spread evenly over ``--spread`` seconds of wall time, the
   drainer run by ``standin.schedules.Ticker`` every ``--tick`` seconds (on AWS:
   every minute, so add up to 60 s to what is measured here). Each item's release is a
   callable that notes the time (no mail): what is measured is the hold book and the
   drainer (listing, claim, finish: four requests an item), not sending. Seconds late =
   release time - due time, p50 / p99 / max.
2. **Evenness** of a windowed job: ``--recipients`` over ``--window-minutes`` through the
   real splitter and drainer under in-process moto, with an **accelerated clock** (the
   drainer runs once a simulated minute, as EventBridge would; no wall-time waiting).
   Rows put on the work queue each minute against the ideal (recipients / minutes): a
   chunk is sent within its minute at the account's rate (here 14/s: 100 rows in 7 s),
   so rows enqueued a minute are the sends a minute, give or take that.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT), str(ROOT / "tests")]

from chalicelib.drain import Drainer  # noqa: E402
from chalicelib.hold import BATCH, Held, HoldBook  # noqa: E402
from chalicelib.ledger import create_table  # noqa: E402
from chalicelib.schedule import When  # noqa: E402

BUCKET, TABLE, NAMESPACE = "postbag-bench", "postbag-bench-ledger", "postbag-bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def accuracy(items: int, spread: float, tick: float, lead: float) -> dict[str, float]:
    from standin.aws import LocalAws
    from standin.schedules import Ticker

    with LocalAws() as aws:
        os.environ.update(aws.client_env())
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        s3.create_bucket(Bucket=BUCKET)
        create_table(dynamodb, TABLE)
        book = HoldBook(dynamodb, TABLE, NAMESPACE, s3, BUCKET)
        # Time to hold them all before the first is due (two requests an item).
        began = time.time()
        start = began + lead
        dues = {f"b{n:05d}": start + spread * n / items for n in range(items)}
        for ident, due in dues.items():
            when = When(send_at=datetime.fromtimestamp(due, UTC))
            book.admit(BATCH, ident, BUCKET, f"queue/{ident}.json", when)
        held_in = time.time() - began
        if held_in > lead:
            print(f"warning: holding took {held_in:.0f} s, more than --lead {lead:g} s")
        released: dict[str, float] = {}
        lock = threading.Lock()

        def note(held: Held) -> bool:
            with lock:
                released.setdefault(held.ident, time.time())
            return True

        ticker = Ticker(lambda event, context: Drainer(
            book, {BATCH: note}, context.get_remaining_time_in_millis).run())
        with ticker.running(tick):
            deadline = time.time() + spread + 120
            while len(released) < items and time.time() < deadline:
                time.sleep(0.5)
        # Markers' times are whole seconds: an item is due at its second, not before.
        late = [released[i] - int(dues[i]) for i in released]
        return {"items": items, "held_in": held_in, "released": len(released),
                "ticks": ticker.ticks,
                "errors": len(ticker.errors), "p50": percentile(late, 0.5),
                "p99": percentile(late, 0.99), "max": max(late), "min": min(late)}


def evenness(recipients: int, minutes: int) -> dict[str, object]:
    from functional.test_held_jobs import Jobs
    from functional.test_split import BUCKET as JOB_BUCKET
    from functional.test_split import SETTINGS, received, upload_job
    from moto import mock_aws

    with mock_aws():
        # Chunks of at most 500 rows, as deployed (the tests' settings cut them at 100).
        jobs = Jobs(rate=14.0, settings=dataclasses.replace(SETTINGS, chunk_rows=500))
        start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
        parts = [10_000] * (recipients // 10_000) + ([recipients % 10_000] if recipients
                                                      % 10_000 else [])
        key = upload_job(jobs.s3, parts, send_between={
            "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()})
        jobs.clock.now = (start - timedelta(minutes=1)).timestamp()
        jobs.splitter.split(JOB_BUCKET, key)
        per_minute = []
        for minute in range(minutes + 1):
            jobs.clock.now = (start + timedelta(minutes=minute)).timestamp()
            jobs.drain()
            per_minute.append(sum(i.end - i.start for i in received(jobs.aws)))
        window = jobs.status()["window"]
    ideal = recipients / minutes
    inside = per_minute[:minutes]
    return {"ideal": ideal, "per_minute": per_minute, "total": sum(per_minute),
            "after_end": per_minute[minutes], "max_deviation": max(abs(n - ideal) for n in inside),
            "stdev": statistics.pstdev(inside), "window": window}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=60.0)
    parser.add_argument("--tick", type=float, default=1.0)
    parser.add_argument("--lead", type=float, default=60.0,
                        help="seconds between the start and the first due time")
    parser.add_argument("--recipients", type=int, default=30_000)
    parser.add_argument("--window-minutes", type=int, default=60)
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.2f}")
    found = accuracy(args.items, args.spread, args.tick, args.lead)
    print(f"accuracy: {found['items']} items held in {found['held_in']:.1f} s; "
          f"{found['released']}/{found['items']} released by "
          f"{found['ticks']} drainer runs every {args.tick:g} s (wall clock, local stand-in), "
          f"{found['errors']} errors; seconds late p50 {found['p50']:.2f}, "
          f"p99 {found['p99']:.2f}, max {found['max']:.2f} (min {found['min']:.2f})")
    spread = evenness(args.recipients, args.window_minutes)
    print(f"evenness: {args.recipients:,} recipients over {args.window_minutes} minutes "
          f"(accelerated clock, drainer once a minute): ideal {spread['ideal']:.1f} a minute; "
          f"max deviation {spread['max_deviation']:.1f}, stdev {spread['stdev']:.1f}; "
          f"{spread['total']:,} rows in all, {spread['after_end']} after the window's end")
    print(f"  rows a minute: {spread['per_minute']}")
    print(f"  plan: {spread['window']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
