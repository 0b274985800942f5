"""Lambda's part, played locally: deliver S3 object-created events to the handlers.

moto cannot run Lambda functions without Docker, so the demo and the tests
list new batch objects and job manifests themselves and call the same
handler code in-process, with a Lambda-like context and Lambda's asynchronous
retry count. SQS's part (the fan-out sender's work items) is in
``sqs_runtime``, in processes of their own.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from standin.server import EVENTS_PATH

# Lambda retries a failed asynchronous invocation twice.
ASYNC_RETRIES = 2


@contextmanager
def repeating(action: Callable[[], object], interval_s: float) -> Iterator[None]:
    """Call ``action()`` every ``interval_s`` in a thread while the block runs: the
    stand-in's timers (S3's and SNS's deliveries, EventBridge's schedules)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            action()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class LambdaContext:
    """The parts of Lambda's context object the sender and powertools read."""

    timeout_s: float = 300.0
    function_name: str = "postbag-local-on_batch_uploaded"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    clock: Callable[[], float] = time.monotonic
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = self.clock() + self.timeout_s
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self.clock()) * 1000))


def s3_event(bucket: str, key: str, size: int, etag: str) -> dict[str, Any]:
    """An ``ObjectCreated:Put`` event as S3 sends it (keys URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key), "size": size, "eTag": etag},
                },
            }
        ]
    }


@dataclass(frozen=True)
class Delivery:
    key: str
    error: str | None = None


@dataclass(frozen=True)
class Route:
    """Which new objects go to which handler: S3's notification filter (prefix, suffix)."""

    prefix: str
    suffix: str
    handler: Callable[[dict[str, Any], Any], Any]


def app_routes(app: Any) -> list[Route]:
    """Every S3 notification the sender's ``app`` module declares (``@app.on_s3_event``:
    batches, job manifests, cancels and reschedules, suppression and re-drive requests,
    ...), as S3 would deliver them: what the demo and the browser tests route, so a
    handler added to app.py is driven locally without another line here."""
    from chalice.app import S3EventConfig

    return [Route(source.prefix or "", source.suffix or "", getattr(app, source.name))
            for source in app.app.event_sources if isinstance(source, S3EventConfig)]


class LocalDispatcher:
    """Delivers one event per new object a route matches (batches: ``queue/`` + ``.json``;
    jobs: ``jobs/`` + ``/manifest.json``; every route of the app: ``app_routes``) until
    none is new.

    Continuations the sender writes back to the queue are new objects too, so
    they are delivered in a later round, as S3 would. One dispatcher per bucket
    remembers what it delivered: a second one would deliver everything again.
    """

    def __init__(
        self,
        s3_client: Any,
        bucket: str,
        routes: Sequence[Route],
        context_factory: Callable[[], Any] = LambdaContext,
    ):
        self._s3 = s3_client
        self._bucket = bucket
        self._routes = routes
        self._context_factory = context_factory
        self._delivered: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # run() from a pumping thread and from the caller
        self.errors: list[str] = []  # what pumping() delivered and the handler refused

    def _new_objects(self) -> list[tuple[dict[str, Any], Route]]:
        fresh = []
        for route in self._routes:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=route.prefix
            )
            fresh += [
                (obj, route)
                for page in pages for obj in page.get("Contents", [])
                if obj["Key"].endswith(route.suffix)
                and (obj["Key"], obj["ETag"]) not in self._delivered
            ]
        return sorted(fresh, key=lambda pair: (pair[0]["LastModified"], pair[0]["Key"]))

    def _invoke(self, obj: dict[str, Any], route: Route) -> Delivery:
        event = s3_event(self._bucket, obj["Key"], obj["Size"], obj["ETag"].strip('"'))
        error = None
        for _ in range(ASYNC_RETRIES + 1):
            try:
                route.handler(event, self._context_factory())
                return Delivery(obj["Key"])
            except Exception as exc:  # noqa: BLE001 - Lambda's runtime catches everything too
                error = f"{type(exc).__name__}: {exc}"
        return Delivery(obj["Key"], error)

    def run(self) -> list[Delivery]:
        deliveries = []
        with self._lock:
            while fresh := self._new_objects():
                for obj, route in fresh:
                    self._delivered.add((obj["Key"], obj["ETag"]))
                    deliveries.append(self._invoke(obj, route))
        return deliveries

    @contextmanager
    def pumping(self, interval_s: float = 0.5) -> Iterator[LocalDispatcher]:
        """Deliver new objects in a thread every ``interval_s`` while the block runs (as S3
        does while a site uploads), then the rest; failed deliveries go to ``errors``."""
        with repeating(self._pump, interval_s):
            yield self
        self._pump()

    def _pump(self) -> None:
        self.errors += [f"{d.key}: {d.error}" for d in self.run() if d.error]


def sns_event(message: dict[str, Any], topic: str) -> dict[str, Any]:
    """An SNS notification as Lambda receives it: one message a record."""
    return sns_records([message], topic)


def sns_records(messages: list[dict[str, Any]], topic: str) -> dict[str, Any]:
    """An event of one record per message (SNS itself sends one)."""
    return {"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "Sns": {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": f"arn:aws:sns:us-east-1:123456789012:{topic}",
            "Subject": None,
            "Message": json.dumps(message),
            "MessageAttributes": {},
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        },
    } for message in messages]}


class LocalSesEvents:
    """Delivers the Send events the stand-in's SES published (``standin.server``) to
    ``on_ses_event``, each as its own SNS notification, as SNS would.

    ``per_call`` above 1 puts that many notifications in one invocation. SNS never
    does, but ``on_ses_event`` reads every record, and so one process keeps up with
    hundreds of sends a second, as SNS's many concurrent invocations do
    (``bench/fanout.py``). An invocation that raises is delivered again on the
    next call, as SNS retries.
    """

    def __init__(self, endpoint: str, handler: Callable[[dict[str, Any], Any], Any],
                 topic: str = "postbag-local-ses-events", per_call: int = 1):
        self._url = endpoint + EVENTS_PATH
        self._handler = handler
        self._topic = topic
        self._per_call = per_call
        self.delivered = 0
        self.invocations = 0
        self.failures = 0

    def deliver(self, limit: int | None = None) -> int:
        """Deliver the events published since the last call (at most ``limit``); returns
        how many."""
        with urllib.request.urlopen(f"{self._url}?after={self.delivered}", timeout=60) as answer:
            events = json.load(answer)[:limit]
        for start in range(0, len(events), self._per_call):
            group = events[start:start + self._per_call]
            self.invocations += 1
            try:
                self._handler(sns_records(group, self._topic), LambdaContext())
            except Exception:  # noqa: BLE001 - SNS retries; so does the next call
                self.failures += 1
                return start
            self.delivered += len(group)
        return len(events)

    @contextmanager
    def pumping(self, interval_s: float = 0.5) -> Iterator[LocalSesEvents]:
        """Deliver events in a thread every ``interval_s`` while the block runs (as SNS
        does while mail goes out), then the rest."""
        with repeating(self.deliver, interval_s):
            yield self
        self.deliver()


def main() -> int:
    """Deliver one S3 event for ``KEY`` to the sender's handler in this process, as one
    Lambda invocation would (no retries); for tests that kill or race real processes.

        python -m standin.lambda_runtime BUCKET KEY [--timeout SECONDS]

    The environment says where AWS is and how the sender is set (``LocalAws.sender_env``).
    Exits 0 when the handler returned, 1 when it raised.
    """
    import argparse
    import os
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "chalice_app"))
    import app  # after the environment: app.py reads its settings at import

    try:
        app.on_batch_uploaded(s3_event(args.bucket, args.key, 0, ""), LambdaContext(args.timeout))
    except Exception as exc:  # noqa: BLE001 - reported, as Lambda's runtime would
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
