"""The outside world of the exactly-once and fault tests: bucket, ledger, fake SES, clock.

Used by ``tests/functional/test_exactly_once.py``, ``test_faults.py`` and ``bench/faults.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
from conftest import load_fixture
from support.clock import FakeClock
from support.fakes import FakeSes
from support.sending import Invocation, SerialClient, dispatcher

from chalicelib.config import ATTACHMENTS_PREFIX, QUEUE_PREFIX, Settings
from chalicelib.errors import TransientError
from chalicelib.ledger import Ledger
from chalicelib.outcome import Recorder
from chalicelib.pipeline import Stages, process_object
from chalicelib.send import SesSender
from chalicelib.store import BatchStore
from chalicelib.suppression import SuppressionStore

BUCKET = "postbag-test"
SETTINGS = Settings(allowed_senders=("example.org",), idempotency_namespace="postbag-test")


class World:
    """The shared outside: bucket, ledger table, SES and the clock."""

    def __init__(self, s3, ses: FakeSes, clock: FakeClock, settings: Settings = SETTINGS):
        self.s3, self.ses, self.clock, self.settings = s3, ses, clock, settings
        self.processed: set[str] = set()
        self.invocations = 0
        self.wall_clock = time.time
        self._published = 0
        self._publishing = threading.Lock()

    def publish_send_events(self) -> None:
        """What on_ses_event does with SES's Send events for the mails SES accepted since."""
        with self._publishing:
            events = self.ses.send_events()
            fresh, self._published = events[self._published:], len(events)
            if fresh:
                ledger = Ledger.from_settings(
                    self.settings, SerialClient(boto3.client("dynamodb"))
                )
                ledger.record_sent(fresh)

    def instance(self, rate: float = 1000.0, workers: int = 8, attempts: int = 5,
                 evidence_window: float = 0.0, dynamodb: Any = None,
                 suppression: str | None = None) -> Stages:
        """A fresh Lambda instance: its own clients, ledger, limiter and pool.

        Abandoned claims are taken over at their expiry unless a test gives the
        ledger an evidence window; SES's Send events reach the ledger only when a
        test publishes them (``publish_send_events``). ``suppression`` names the
        suppression table it checks, through the same DynamoDB client.
        """
        s3 = SerialClient(boto3.client("s3", region_name="us-east-1"))
        ledger = Ledger.from_settings(
            self.settings,
            dynamodb_client=dynamodb or SerialClient(boto3.client("dynamodb")),
            evidence_window=evidence_window, clock=self.wall_clock,
        )
        dispatch = dispatcher(ledger, self.clock, rate=rate, workers=workers, attempts=attempts)
        client = dynamodb or SerialClient(boto3.client("dynamodb"))
        return Stages(self.settings, BatchStore(s3), SesSender(self.ses), dispatch,
                      Recorder(s3),
                      suppression=SuppressionStore(client, suppression) if suppression else None)

    def invoke(self, stages: Stages, key: str, remaining_ms: Callable[[], int] | None = None):
        """One invocation for one object; True when it finished, False when Lambda must retry."""
        self.invocations += 1
        remaining_ms = remaining_ms or Invocation(self.clock).get_remaining_time_in_millis
        try:
            process_object(stages, BUCKET, key, remaining_ms)
        except TransientError:
            return False
        self.processed.add(key)
        return True

    def queued(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=QUEUE_PREFIX)
        return sorted(
            o["Key"] for o in listing.get("Contents", [])
            if o["Key"].endswith(".json")
            and not o["Key"].startswith(ATTACHMENTS_PREFIX)
        )

    def drain(self, make_stages: Callable[[], Stages] | None = None, budget_s: float = 900.0,
              limit: int = 100, retry_delay: float = 0.0) -> None:
        """Deliver every unprocessed queue object, retrying failures (``retry_delay``
        simulated seconds later, as Lambda waits), until none is left."""
        make_stages = make_stages or self.instance
        for _ in range(limit):
            pending = [k for k in self.queued() if k not in self.processed]
            if not pending:
                return
            for key in pending:
                remaining = Invocation(self.clock, budget_s).get_remaining_time_in_millis
                if not self.invoke(make_stages(), key, remaining):
                    self.clock.sleep(retry_delay)
        raise AssertionError(f"queue not drained after {limit} rounds")

    def sent_counts(self) -> Counter:
        return Counter(self.ses.subjects())

    def receipt(self, name: str) -> dict:
        body = self.s3.get_object(Bucket=BUCKET, Key=f"receipts/{name}.json")["Body"].read()
        return json.loads(body)


def batch_document(batch_id: str, ids: list[str]) -> dict:
    doc = load_fixture("batches/plain.json")
    template = doc["emails"][0]
    doc["batch_id"] = batch_id
    doc["meta"]["bcc"] = []
    doc["emails"] = [
        {**template, "id": mail_id, "subject": mail_id, "to": [f"{mail_id}@example.net"]}
        for mail_id in ids
    ]
    return doc


def upload(s3, key: str, doc: dict) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
    return key


def assert_each_once(world: World, ids: list[str]) -> None:
    counts = world.sent_counts()
    assert sorted(counts) == sorted(ids), "lost or unexpected mails"
    assert [m for m, n in counts.items() if n > 1] == [], "duplicates"


