"""The outside world of the fan-out tests: a bucket with notify jobs, the ledger table, a
work queue, the fake SES and a simulated clock.

moto's SQS honours ``DelaySeconds`` in real time and cannot lose or repeat a
message on demand; ``FakeSqs`` keeps each message with its delay, so a test
delivers what it wants when it wants (twice, at once, after a crash), with the
real ``WorkQueue`` encoding and decoding the bodies. Each "instance" has its own
clients, ledger, shared-limiter client, caches and pool, as Lambda instances do.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from conftest import load_fixture
from support.clock import FakeClock
from support.fakes import FakeSes
from support.sending import Invocation, SerialClient

from chalicelib.config import Settings
from chalicelib.dispatch import Dispatcher
from chalicelib.errors import TransientError
from chalicelib.fanout import FanoutStages, Handled, JobCache, process_work_item
from chalicelib.ledger import Ledger
from chalicelib.outcome import Recorder
from chalicelib.pipeline import Stages
from chalicelib.progress import JobProgress, status_key
from chalicelib.quota import QuotaWatch
from chalicelib.ratelimit import SharedRateLimiter
from chalicelib.render import Renderer
from chalicelib.retry import RetryPolicy
from chalicelib.send import SesSender
from chalicelib.split import Splitter
from chalicelib.store import BatchStore
from chalicelib.suppression import SuppressionStore
from chalicelib.tally import Tally
from chalicelib.workqueue import WorkQueue, decode

BUCKET = "postbag-test"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/postbag-test-work"
SETTINGS = Settings(allowed_senders=("example.org",), idempotency_namespace="postbag-test",
                    chunk_rows=4)
FIXTURE_MANIFEST = "jobs/new-post/jobs/7d3f0c2a-9b1e-4f5a-8c6d-2e4b1a0f9c01/manifest.json"


@dataclass
class Message:
    body: str
    delay: int = 0


class FakeSqs:
    """The two SQS calls ``WorkQueue`` makes, kept in memory. Thread-safe."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def send_message(self, QueueUrl: str, MessageBody: str, DelaySeconds: int = 0) -> dict:
        with self._lock:
            self.messages.append(Message(MessageBody, DelaySeconds))
        return {"MessageId": "m"}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        with self._lock:
            self.messages += [Message(e["MessageBody"]) for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def take(self) -> Message | None:
        with self._lock:
            return self.messages.pop(0) if self.messages else None


def recipients(count: int, prefix: str = "r") -> list[dict]:
    """Rows with distinct addresses; each subject names its recipient (template below). The
    fixture job names a list, so each row carries its unsubscribe URL, as the plugin writes."""
    return [{"email": f"{prefix}{n:04d}@example.net", "name": f"R {n}",
             "unsubscribe_url": unsubscribe_url(f"{prefix}{n:04d}@example.net")}
            for n in range(count)]


def unsubscribe_url(email: str) -> str:
    """A row's one-click URL, shaped as the plugin's (the token is not checked here)."""
    token = hashlib.sha256(email.encode()).hexdigest()[:32]
    return f"https://blog.example.org/wp-json/postbag/v1/unsubscribe?list=new-posts&t={token}"


def part_bytes(rows: list[Any]) -> bytes:
    """A part file: each row as a JSON line (a ``str`` row is written as it is)."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    return gzip.compress("".join(line + "\n" for line in lines).encode())


class JobWorld:
    """The shared outside: bucket, tables, queue, SES and the clock."""

    def __init__(self, s3, ses: FakeSes, clock: FakeClock, settings: Settings = SETTINGS):
        self.s3, self.ses, self.clock, self.settings = s3, ses, clock, settings
        self.sqs = FakeSqs()
        self.wall_clock = time.time  # the ledger's: claims are compared across instances
        self.queue = WorkQueue(self.sqs, QUEUE_URL)
        self._ids = itertools.count(1)
        self._published = 0
        self._publishing = threading.Lock()

    # --- jobs --------------------------------------------------------------------------

    def upload_job(self, parts: list[list[Any]], **manifest: Any) -> str:
        """A job whose parts hold ``parts``' rows (subject "Hi {{ recipient.email }}"),
        uploaded parts first, then split onto the queue; returns its id."""
        job_id = f"job-{next(self._ids):04d}"
        doc = copy.deepcopy(load_fixture(FIXTURE_MANIFEST))
        doc["job_id"] = job_id
        doc["template"]["subject"] = "Hi {{ recipient.email }}"
        doc["parts"] = []
        for n, rows in enumerate(parts, start=1):
            key, data = f"jobs/{job_id}/part-{n:05d}.ndjson.gz", part_bytes(rows)
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
            doc["parts"].append({"key": key, "rows": len(rows), "bytes": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest()})
        doc["recipients"] = sum(len(rows) for rows in parts)
        doc.update(manifest)
        key = f"jobs/{job_id}/manifest.json"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
        s3 = boto3.client("s3", region_name="us-east-1")
        Splitter(BatchStore(s3), self.queue, self.progress(), Recorder(s3),
                 self.settings).split(BUCKET, key)
        return job_id

    def progress(self) -> JobProgress:
        return JobProgress(boto3.client("dynamodb", region_name="us-east-1"),
                           self.settings.ledger_table, self.settings.idempotency_namespace,
                           boto3.client("s3", region_name="us-east-1"))

    def status(self, job_id: str) -> dict:
        body = self.s3.get_object(Bucket=BUCKET, Key=status_key(job_id))["Body"].read()
        return json.loads(body)

    def cancel(self, job_id: str) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=f"jobs/{job_id}/cancel", Body=b"")

    # --- instances -----------------------------------------------------------------------

    def instance(self, rate: float = 1000.0, workers: int = 4, attempts: int = 5,
                 evidence_window: float = 0.0, quota_refresh: float = 60.0,
                 sender: SesSender | None = None,
                 faults: Callable[[str, Any], Any] = lambda service, client: client,
                 suppression: str | None = None,
                 ) -> FanoutStages:
        """A fresh Lambda instance of the fan-out function (SES v1 and v2 both the fake,
        unless ``sender`` says otherwise); ``faults(service, client)`` may wrap its S3 and
        DynamoDB clients; ``suppression`` names the suppression table it checks (faults
        wrap its client too)."""
        s3 = faults("s3", SerialClient(boto3.client("s3", region_name="us-east-1")))
        dynamodb = faults("dynamodb",
                          SerialClient(boto3.client("dynamodb", region_name="us-east-1")))
        ledger = Ledger.from_settings(self.settings, dynamodb_client=dynamodb,
                                      evidence_window=evidence_window, clock=self.wall_clock)
        limiter = SharedRateLimiter(dynamodb, self.settings.ledger_table,
                                    self.settings.idempotency_namespace, rate, rate / 4,
                                    clock=self.clock, sleep=self.clock.sleep)
        dispatcher = Dispatcher(ledger, limiter, RetryPolicy(attempts=attempts,
                                                             sleep=self.clock.sleep),
                                workers=workers, clock=self.clock, sleep=self.clock.sleep)
        mail = Stages(self.settings, BatchStore(s3), sender or SesSender(self.ses, self.ses),
                      dispatcher, Recorder(s3),
                      suppression=SuppressionStore(dynamodb, suppression) if suppression else None)
        progress = JobProgress(dynamodb, self.settings.ledger_table,
                               self.settings.idempotency_namespace, s3)
        return FanoutStages(mail, self.queue, progress, Renderer(),
                            QuotaWatch(self.ses, clock=self.clock, refresh_seconds=quota_refresh),
                            Tally(dynamodb, self.settings.ledger_table,
                                  self.settings.idempotency_namespace),
                            JobCache(s3))

    def deliver(self, stages: FanoutStages, message: Message,
                remaining_ms: Callable[[], int] | None = None) -> Handled:
        remaining_ms = remaining_ms or Invocation(self.clock).get_remaining_time_in_millis
        return process_work_item(stages, decode(message.body), remaining_ms)

    def drain(self, make_stages: Callable[[], FanoutStages] | None = None,
              limit: int = 200) -> list[Handled]:
        """Deliver every message, one at a time, until the queue is empty; a delivery that
        raises ``TransientError`` is delivered again (as SQS does once the visibility timeout
        passes). Anything else is a bug and fails the test."""
        make_stages = make_stages or self.instance
        handled = []
        for _ in range(limit):
            message = self.sqs.take()
            if message is None:
                return handled
            self.clock.sleep(message.delay)
            try:
                handled.append(self.deliver(make_stages(), message))
            except TransientError:
                self.sqs.messages.append(message)
        raise AssertionError(f"queue not drained after {limit} deliveries")

    def publish_send_events(self) -> None:
        """What on_ses_event does with SES's Send events for the mails accepted since."""
        with self._publishing:
            events = self.ses.send_events()
            fresh, self._published = events[self._published:], len(events)
            if fresh:
                Ledger.from_settings(self.settings, boto3.client("dynamodb")).record_sent(fresh)

    # --- what SES received -----------------------------------------------------------------

    def sent_to(self) -> Counter:
        """Mails SES accepted, per recipient address."""
        return Counter(addr for a in self.ses.accepted for addr in a.recipients)


def assert_each_once(world: JobWorld, addresses: list[str]) -> None:
    counts = world.sent_to()
    assert sorted(counts) == sorted(set(addresses)), "lost or unexpected mails"
    assert [a for a, n in counts.items() if n > 1] == [], "duplicates"


def wait_real(seconds: float) -> None:
    """Claims expire by the wall clock (the ledger compares them across instances)."""
    time.sleep(seconds)
