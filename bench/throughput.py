"""Send rate one function instance reaches, and ledger writes per mail.

One instance's worth of sending (the real dispatch stage: bounded pool, rate
limiter, retry policy, ledger) against a fake SES that answers after 50 ms,
at configured rates of 14, 100 and 500 mails/s, in real time.

Two runs of the real ledger. First on moto's DynamoDB, its calls counted with
a botocore event hook on the client. moto does its DynamoDB work on this
machine's CPU (in this process by default; its server in another), which
real DynamoDB does not. Then on an in-memory stand-in for DynamoDB's three
calls taking 5 ms each: what the pool and limiter reach when DynamoDB keeps up.

Prints, per rate: achieved rate as a share of the configured one (target at
least 95%, never above), the busiest one-second window seen by SES, ledger
write calls per mail (claims are one TransactWriteItems per chunk,
completions one BatchWriteItem per 25 mails) and items written per mail
(a claim and a completion: at most 2), this process's CPU.

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
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT / "tests"), str(ROOT)]

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from moto import mock_aws  # noqa: E402
from support.clock import busiest_second  # noqa: E402
from support.fakes import FakeSes  # noqa: E402
from support.sending import jobs, mail_ids  # noqa: E402

from chalicelib.config import Settings  # noqa: E402
from chalicelib.dispatch import Dispatcher, pool_size  # noqa: E402
from chalicelib.ledger import Ledger, create_table  # noqa: E402
from chalicelib.observe import logger  # noqa: E402
from chalicelib.ratelimit import RateLimiter  # noqa: E402
from chalicelib.retry import RetryPolicy  # noqa: E402
from standin.aws import CREDENTIALS, LocalAws  # noqa: E402
from standin.lambda_runtime import LambdaContext  # noqa: E402

RATES = (14, 100, 500)
SES_LATENCY = 0.050
DYNAMODB_LATENCY = 0.005  # a typical DynamoDB call, for the in-memory stand-in
WRITES = frozenset({"TransactWriteItems", "BatchWriteItem"})


class Count:
    """DynamoDB calls and items written, counted from the API parameters."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.items = 0
        self._lock = threading.Lock()

    def __call__(self, name: str, params: dict) -> None:
        written = 0
        if name in WRITES:  # a claim (Put) or a completion or release (PutRequest, DeleteRequest)
            written = len(params.get("TransactItems", ())) + sum(
                len(requests) for requests in params.get("RequestItems", {}).values()
            )
        with self._lock:
            self.calls[name] += 1
            self.items += written


class MemoryDynamoDB:
    """The three calls the ledger makes, on a dict, each taking ``DYNAMODB_LATENCY``.

    Claims never expire here (nothing crashes in a benchmark): a key present
    fails its condition.
    """

    def __init__(self, count: Count):
        self._items: dict[str, dict] = {}
        self._count = count
        self._lock = threading.Lock()

    def transact_write_items(self, TransactItems):  # noqa: N803 (botocore's names)
        self._call("TransactWriteItems", {"TransactItems": TransactItems})
        with self._lock:
            ids = [put["Put"]["Item"]["id"]["S"] for put in TransactItems]
            taken = [rid in self._items for rid in ids]
            if any(taken):
                reasons = [{"Code": "ConditionalCheckFailed" if t else "None"} for t in taken]
                raise ClientError({"Error": {"Code": "TransactionCanceledException"},
                                   "CancellationReasons": reasons}, "TransactWriteItems")
            self._items.update((put["Put"]["Item"]["id"]["S"], put["Put"]["Item"])
                               for put in TransactItems)
        return {}

    def batch_get_item(self, RequestItems):  # noqa: N803
        self._call("BatchGetItem", {"RequestItems": RequestItems})
        ((table, request),) = RequestItems.items()
        with self._lock:
            found = [self._items[k["id"]["S"]] for k in request["Keys"]
                     if k["id"]["S"] in self._items]
        return {"Responses": {table: found}}

    def batch_write_item(self, RequestItems):  # noqa: N803
        self._call("BatchWriteItem", {"RequestItems": RequestItems})
        with self._lock:
            for request in next(iter(RequestItems.values())):
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    self._items[item["id"]["S"]] = item
                else:
                    self._items.pop(request["DeleteRequest"]["Key"]["id"]["S"], None)
        return {}

    def _call(self, name: str, params: dict) -> None:
        self._count(name, params)
        time.sleep(DYNAMODB_LATENCY)


def copy_each_table_once() -> None:
    """Make moto's in-process TransactWriteItems back a table up once per call, not per item.

    moto 5.2 deep-copies the whole table once for every item of a transaction,
    all before writing any (the copies are equal): a claim of N keys costs N
    copies of the table, a second for 25 keys at 3,000 records, where
    DynamoDB answers in milliseconds. One copy per table per call is the same
    backup. Like ``tests/support/sending.py``'s ``SerialClient``, this takes a gap of
    the mock out of the measurement; ``--moto-as-is`` leaves it in.
    """
    import copy

    import moto.dynamodb.models as models

    backend = models.DynamoDBBackend
    original = backend.transact_write_items
    local = threading.local()

    class OncePerCall:
        def __getattr__(self, name):
            return getattr(copy, name)

        def deepcopy(self, obj, memo=None):
            cache = getattr(local, "tables", None)
            if cache is None or not isinstance(obj, models.Table):
                return copy.deepcopy(obj, memo)
            if id(obj) not in cache:
                cache[id(obj)] = copy.deepcopy(obj)
            return cache[id(obj)]

    def transact_write_items(self, transact_items):
        local.tables = {}
        try:
            return original(self, transact_items)
        finally:
            local.tables = None

    models.copy = OncePerCall()
    backend.transact_write_items = transact_write_items


def ledger_settings(rate: int) -> Settings:
    return Settings(ledger_table=f"bench-{rate}", idempotency_namespace="postbag-bench")


def memory_ledger(rate: int) -> tuple[Ledger, Count]:
    count = Count()
    return Ledger.from_settings(ledger_settings(rate), MemoryDynamoDB(count)), count


def moto_ledger(rate: int, endpoint: str | None) -> tuple[Ledger, Count]:
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    settings = ledger_settings(rate)
    create_table(client, settings.ledger_table)
    count = Count()
    client.meta.events.register(
        "before-parameter-build.dynamodb.*", lambda params, model, **_: count(model.name, params)
    )
    return Ledger.from_settings(settings, client), count


def run_rate(rate: int, seconds: float, ledger: Ledger, count: Count) -> dict[str, float]:
    ses = FakeSes(latency=SES_LATENCY)
    mails = int(rate * seconds)
    workers = pool_size(rate, 4)
    dispatcher = Dispatcher(ledger, RateLimiter(rate), RetryPolicy(), workers=workers)
    remaining_ms = LambdaContext(900).get_remaining_time_in_millis

    cpu = time.process_time()
    outcomes = dispatcher.run(jobs(ses, mail_ids(mails), batch_id=f"bench{rate}"),
                              remaining_ms, margin_ms=15_000)
    cpu = time.process_time() - cpu
    times = ses.times()
    achieved = (len(times) - 1) / (times[-1] - times[0])
    return {
        "rate": rate,
        "workers": workers,
        "mails": mails,
        "sent": sum(o.status == "sent" for o in outcomes),
        "achieved": achieved,
        "share": achieved / rate,
        "busiest": busiest_second(times),
        "write_calls": sum(n for name, n in count.calls.items() if name in WRITES) / mails,
        "items": count.items / mails,
        "calls": sum(count.calls.values()) / mails,
        "cpu_ms": cpu * 1000 / mails,
    }


def print_table(title: str, rows: list[dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'rate/s':>7} {'workers':>7} {'mails':>6} {'sent':>6} {'achieved/s':>10} "
          f"{'share':>7} {'busiest 1 s':>11} {'write calls/mail':>16} {'items/mail':>10} "
          f"{'calls/mail':>10} "
          f"{'CPU ms/mail':>11}")
    for r in rows:
        print(f"{r['rate']:>7} {r['workers']:>7} {r['mails']:>6} {r['sent']:>6} "
              f"{r['achieved']:>10.1f} {r['share']:>7.1%} {r['busiest']:>11} "
              f"{r['write_calls']:>16.3f} {r['items']:>10.2f} {r['calls']:>10.3f} "
              f"{r['cpu_ms']:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="sending time per rate")
    parser.add_argument("--moto", choices=("in-process", "server"), default="in-process",
                        help="where moto's DynamoDB runs (default: %(default)s)")
    parser.add_argument("--moto-as-is", action="store_true",
                        help="keep moto's per-item table copies in transactions (in-process)")
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
        if not args.moto_as_is:
            copy_each_table_once()
        with mock_aws():
            rows = [run_rate(rate, args.seconds, *moto_ledger(rate, None)) for rate in RATES]
    patched = "" if args.moto == "server" or args.moto_as_is else ", one table copy per transaction"
    print_table(f"ledger on DynamoDB (moto, {args.moto}{patched})", rows)
    rows = [run_rate(rate, args.seconds, *memory_ledger(rate)) for rate in RATES]
    print_table(f"ledger on an in-memory DynamoDB, {DYNAMODB_LATENCY * 1000:.0f} ms per call "
                "(the pool and limiter when DynamoDB keeps up)", rows)
    print("\ntargets: share >= 95%, never above the rate (busiest 1 s <= rate); "
          "<= 2 items written per mail, write calls per mail << 2")


if __name__ == "__main__":
    main()
