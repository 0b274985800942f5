"""Send rate one function instance reaches, and ledger calls per mail.

One instance's worth of sending (the real dispatch stage: bounded pool, rate
limiter, retry policy, ledger) against a fake SES that answers after 50 ms,
at configured rates of 14, 100 and 500 mails/s, in real time.

Two runs. First the real ledger (powertools idempotency) on moto's DynamoDB,
its calls counted with a botocore event hook on the client. moto does its
DynamoDB work on this machine's CPU (in this process by default; its server
answers only ~250 calls/s here), which real DynamoDB does not, so the high
rates measure moto as much as the sender. Then the same stage with an
in-memory ledger taking 5 ms per call: what the pool and limiter reach when
the ledger keeps up.

Prints, per rate: achieved rate as a share of the configured one (target at
least 95%, never above), the busiest one-second window seen by SES, ledger
calls and writes per mail (target at most 2 writes), this process's CPU.

    .venv/bin/python bench/throughput.py [--seconds 5] [--moto server]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT / "tests")]

import boto3  # noqa: E402
from clock import busiest_second  # noqa: E402
from fakes import FakeSes  # noqa: E402
from moto import mock_aws  # noqa: E402
from sending import jobs, mail_ids  # noqa: E402

from chalicelib.config import Settings  # noqa: E402
from chalicelib.dispatch import Dispatcher, pool_size  # noqa: E402
from chalicelib.ledger import DONE, REPLAYED, Entry, Ledger, Result, create_table  # noqa: E402
from chalicelib.observe import logger  # noqa: E402
from chalicelib.ratelimit import RateLimiter  # noqa: E402
from chalicelib.retry import RetryPolicy  # noqa: E402
from postbag.localaws import CREDENTIALS, LocalAws  # noqa: E402

RATES = (14, 100, 500)
SES_LATENCY = 0.050
LEDGER_LATENCY = 0.005  # a typical DynamoDB write, for the in-memory ledger
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})


class MemoryLedger:
    """The ledger's interface on a dict, each call taking ``LEDGER_LATENCY``.

    Shows what the pool and limiter reach when the ledger keeps up; the
    moto-backed run shows the real ledger's calls and the stand-in's ceiling.
    """

    def __init__(self):
        self.records: dict[str, Result] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def register_lambda_context(self, context) -> None:
        pass  # claims never expire here: nothing crashes in a benchmark

    def once(self, key: str, action) -> Entry:
        time.sleep(LEDGER_LATENCY)
        with self._lock:
            self.calls["PutItem"] += 1
            if key in self.records:
                return Entry(REPLAYED, self.records[key])
            self.records[key] = Result()
        result = action()
        time.sleep(LEDGER_LATENCY)
        with self._lock:
            self.calls["UpdateItem"] += 1
            self.records[key] = result
        return Entry(DONE, result)


def moto_ledger(rate: int, endpoint: str) -> tuple[Ledger, Counter[str]]:
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    settings = Settings(ledger_table=f"bench-{rate}", idempotency_namespace="postbag-bench")
    create_table(client, settings.ledger_table)
    calls: Counter[str] = Counter()
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.update([model.name])
    )
    return Ledger.from_settings(settings, dynamodb_client=client), calls


def run_rate(rate: int, seconds: float, ledger, calls: Counter[str]) -> dict[str, float]:
    ses = FakeSes(latency=SES_LATENCY)
    count = int(rate * seconds)
    dispatcher = Dispatcher(ledger, RateLimiter(rate), RetryPolicy(), workers=pool_size(rate, 4))
    deadline = time.monotonic() + 900

    def remaining_ms() -> int:
        return int((deadline - time.monotonic()) * 1000)

    cpu = time.process_time()
    outcomes = dispatcher.run(jobs(ses, mail_ids(count), batch_id=f"bench{rate}"),
                              remaining_ms, margin_ms=15_000)
    cpu = time.process_time() - cpu
    times = ses.times()
    achieved = (len(times) - 1) / (times[-1] - times[0])
    return {
        "rate": rate,
        "workers": pool_size(rate, 4),
        "mails": count,
        "sent": sum(o.status == "sent" for o in outcomes),
        "achieved": achieved,
        "share": achieved / rate,
        "busiest": busiest_second(times),
        "writes": sum(n for name, n in calls.items() if name in WRITES) / count,
        "calls": sum(calls.values()) / count,
        "cpu_ms": cpu * 1000 / count,
    }


def print_table(title: str, rows: list[dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'rate/s':>7} {'workers':>7} {'mails':>6} {'sent':>6} {'achieved/s':>10} "
          f"{'share':>7} {'busiest 1 s':>11} {'writes/mail':>11} {'calls/mail':>10} "
          f"{'CPU ms/mail':>11}")
    for r in rows:
        print(f"{r['rate']:>7} {r['workers']:>7} {r['mails']:>6} {r['sent']:>6} "
              f"{r['achieved']:>10.1f} {r['share']:>7.1%} {r['busiest']:>11} "
              f"{r['writes']:>11.2f} {r['calls']:>10.2f} {r['cpu_ms']:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="sending time per rate")
    parser.add_argument("--moto", choices=("in-process", "server"), default="in-process",
                        help="where moto's DynamoDB runs (default: %(default)s)")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    logger.setLevel("WARNING")  # one INFO line per mail would be measured too
    print(f"fake SES answers after {SES_LATENCY * 1000:.0f} ms; "
          f"{args.seconds:g} s of mail per rate; CPU is this process's (moto runs in its own)")
    if args.moto == "server":
        with LocalAws() as aws:
            rows = [run_rate(rate, args.seconds, *moto_ledger(rate, aws.endpoint))
                    for rate in RATES]
    else:
        with mock_aws():
            rows = [run_rate(rate, args.seconds, *moto_ledger(rate, None)) for rate in RATES]
    print_table(f"ledger: powertools idempotency on DynamoDB (moto, {args.moto})", rows)
    rows = []
    for rate in RATES:
        ledger = MemoryLedger()
        rows.append(run_rate(rate, args.seconds, ledger, ledger.calls))
    print_table(f"ledger: in memory, {LEDGER_LATENCY * 1000:.0f} ms per call "
                "(the pool and limiter alone)", rows)
    print("\ntargets: share >= 95%, never above the rate (busiest 1 s <= rate); "
          "<= 2 ledger writes per mail")


if __name__ == "__main__":
    main()
