"""bench/fanout.py's cost model: its formulas, on round measured figures."""

from __future__ import annotations

import math
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import fanout  # noqa: E402

MEASURED = {
    "chunk_rows": 500, "part_rows": 10_000, "memory_mb": 1024, "ses_latency_ms": 50,
    "overhead_seconds": 10.0, "cpu_seconds_per_mail": 0.001,
    "per_chunk": {"invocations": 1.0, "split_seconds": 0.002, "sqs_requests": 2.5,
                  "dynamodb_wru": 1500.0, "dynamodb_rru": 1.0, "s3_put": 1.0, "s3_get": 3.0},
    "per_event": {"seconds": 0.004, "sqs_requests": 0.0, "dynamodb_wru": 1.0,
                  "dynamodb_rru": 0.0, "s3_put": 0.0, "s3_get": 0.0},
}
# One vCPU's share at 1,024 MB over 1 ms a mail: one instance sends at most this fast.
CPU_RATE = (1024 / fanout.MB_PER_VCPU) / 0.001


@pytest.mark.parametrize("recipients", [1, 499, 500, 501, 1_000_000],
                         ids=["one", "under-a-chunk", "a-chunk", "over-a-chunk", "a-million"])
def test_counts_follow_the_chunks_and_the_mails(recipients):
    row = fanout.model(recipients, 100, MEASURED)
    chunks = math.ceil(recipients / 500)
    # A work item per chunk, the splitter's one, an on_ses_event per mail.
    assert row["invocations"] == chunks + 1 + recipients
    assert row["sqs_requests"] == pytest.approx(2.5 * chunks)
    assert row["dynamodb_wru"] == pytest.approx(1500 * chunks + recipients)
    assert row["dynamodb_rru"] == pytest.approx(chunks)
    parts = math.ceil(recipients / 10_000)
    assert row["s3_put"] == pytest.approx(parts + 1 + chunks)  # parts, manifest, per chunk
    assert row["s3_get"] == pytest.approx(3 * chunks)


@pytest.mark.parametrize(("rate", "instances"), [
    (14, 1), (100, 1), (CPU_RATE, 1), (CPU_RATE + 1, 2), (1000, math.ceil(1000 / CPU_RATE)),
], ids=["14", "100", "one-instance-full", "just-over-one", "1000"])
def test_instances_are_the_fewest_that_reach_the_rate(rate, instances):
    assert fanout.model(1_000_000, rate, MEASURED)["instances"] == instances


def test_time_and_gb_seconds():
    row = fanout.model(1_000_000, 100, MEASURED)
    assert row["seconds"] == pytest.approx(10_000 + 10)  # N / R + the measured overhead
    busy = 1 * row["seconds"]  # one instance, busy the whole time
    assert row["gb_seconds"] == pytest.approx(1.0 * (busy + 2000 * 0.002 + 1_000_000 * 0.004))


def test_costs_per_million_use_the_prices():
    row = fanout.model(1_000_000, 500, MEASURED)
    prices = fanout.PRICES
    assert row["cost_ses"] == pytest.approx(100.0)
    assert row["cost_lambda"] == pytest.approx(
        row["gb_seconds"] * 0.0000166667 + row["invocations"] * 0.20 / 1e6)
    assert row["cost_sqs"] == pytest.approx(row["sqs_requests"] * 0.40 / 1e6)
    assert row["cost_dynamodb"] == pytest.approx(
        row["dynamodb_wru"] * 0.625 / 1e6 + row["dynamodb_rru"] * 0.125 / 1e6)
    assert row["cost_s3"] == pytest.approx(row["s3_put"] * prices["s3_per_put"]
                                           + row["s3_get"] * prices["s3_per_get"])
    assert row["cost_total"] == pytest.approx(sum(row[f"cost_{name}"] for name in
                                                  ("ses", "lambda", "sqs", "dynamodb", "s3")))
    # Per million: a job of half a million costs the same per mail.
    half = fanout.model(500_000, 500, MEASURED)
    assert half["cost_ses"] == pytest.approx(100.0)


def test_units_bill_transactions_twice_and_count_items():
    calls = {"dynamodb.TransactWriteItems": 2, "dynamodb.TransactWriteItems:items": 150,
             "dynamodb.BatchWriteItem": 6, "dynamodb.BatchWriteItem:items": 150,
             "dynamodb.UpdateItem": 4, "dynamodb.GetItem": 1,
             "dynamodb.BatchGetItem": 1, "dynamodb.BatchGetItem:items": 7,
             "s3.GetObject": 2, "s3.HeadObject": 1, "s3.PutObject": 1,
             "sqs.SendMessageBatch": 1, "sqs.SendMessageBatch:items": 10, "sqs.(poller)": 2}
    assert fanout.units(calls) == {"sqs_requests": 3, "dynamodb_wru": 300 + 150 + 4,
                                   "dynamodb_rru": 7 + 1, "s3_put": 1, "s3_get": 3}
