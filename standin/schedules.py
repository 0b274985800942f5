"""EventBridge's part, played locally: run a scheduled handler (the drainer) on a timer.

moto stores schedules but never fires them (docs/scheduling.md). The stand-in calls
``@app.schedule`` handlers itself: every ``interval_s`` of wall time while a block runs
(the demo, bench/schedule.py), or once per ``tick()`` for a test that moves a clock.
A shorter interval than AWS's minute is allowed: it only makes the local demo quicker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from standin.lambda_runtime import LambdaContext, repeating


def scheduled_event(now: datetime | None = None) -> dict[str, Any]:
    """What EventBridge hands a function on a ``Rate`` schedule."""
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": moment,
            "region": "us-east-1", "resources": [], "detail": {}}


class Ticker:
    """Calls ``handler(event, context)`` like EventBridge; errors are counted, not raised
    (EventBridge's invocation is asynchronous: the next tick comes anyway)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], timeout_s: float = 120.0,
                 function_name: str = "postbag-local-drain_held"):
        self._handler, self._timeout, self._name = handler, timeout_s, function_name
        self.ticks = 0
        self.started: list[float] = []  # wall time each run began: lateness is judged from them
        self.errors: list[str] = []

    def tick(self) -> None:
        self.ticks += 1
        self.started.append(time.time())
        try:
            self._handler(scheduled_event(), LambdaContext(self._timeout, self._name))
        except Exception as exc:  # noqa: BLE001 - Lambda's runtime catches everything too
            self.errors.append(f"{type(exc).__name__}: {exc}")

    @contextmanager
    def running(self, interval_s: float = 2.0) -> Iterator[Ticker]:
        """Tick every ``interval_s`` in a thread while the block runs."""
        with repeating(self.tick, interval_s):
            yield self
