"""What the sender publishes for WordPress and the operator, at most once a minute.

The handlers that change things only mark what changed, in one item of the ledger's
table (``<namespace>#feedback#pending``): the inbox (the suppression export), SES's
events (the feedback status, the jobs they were about). A scheduled run a minute
apart (``app.publish_status``) writes what is marked:

- ``suppressions/export.json``, rebuilt from the suppression table;
- ``status/feedback.json``: per-day counts of the last ``DAYS_SHOWN`` days and the
  7-day bounce and complaint rates (also as metrics, which the alarms watch, once the
  7 days hold ``MIN_RATE_SENDS`` sends: one bounce in two mails is no rate);
- the marked jobs' ``status.json``, with their feedback counts.

So a burst of a thousand unsubscribes writes the export once, and it is never older
than about a minute. The run *takes* the marks first (one update that removes them and
returns what they were), then reads and writes: whatever is counted after the take
marks again for the next run, and whatever was counted before it is read by this one.
A run that fails puts back what it took.

SES sends two or three events a mail, so the events handler keeps its writes off single
hot items: a mark already there is seen by a (consistent) read and not written again,
and each day's counters are spread over ``DAY_SHARDS`` items that the run adds up.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from chalicelib import dynamo
from chalicelib.config import FEEDBACK_STATUS_KEY, SUPPRESSION_EXPORT_KEY
from chalicelib.errors import LedgerUnavailable
from chalicelib.ledger import KEY_ATTRIBUTE, MAX_BATCH_GET_KEYS
from chalicelib.observe import metrics
from chalicelib.outcome import Recorder
from chalicelib.progress import JobProgress
from chalicelib.suppression import SuppressionStore, rfc3339

DAYS_SHOWN = 14
RATE_DAYS = 7
DAY_COUNTS = ("sent", "delivered", "bounced", "soft_bounced", "complained", "rejected",
              "rendering_failed", "opens", "clicks")
BOUNCE_RATE, COMPLAINT_RATE = "BounceRate7d", "ComplaintRate7d"
# Sends in the 7 days before the rates are metrics the alarms see (docs/suppression.md).
MIN_RATE_SENDS = 200
# Items each day's counters are spread over: one item takes about 1,000 writes a second.
DAY_SHARDS = 8
_FLAGS = ("export_due", "feedback_due")


@dataclass(frozen=True)
class Pending:
    """What is marked for the next run."""

    export: bool = False
    feedback: bool = False
    jobs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.export or self.feedback or bool(self.jobs)


class Marks:
    """The pending item and the per-day counters, in the ledger's table."""

    def __init__(self, dynamodb_client: Any, table: str, namespace: str,
                 shard: Callable[[], int] = lambda: random.randrange(DAY_SHARDS)):
        self._client = dynamodb_client
        self._table = table
        self._namespace = namespace
        self._shard = shard

    def _key(self, name: str) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": f"{self._namespace}#feedback#{name}"}}

    def _call(self, operation: str, **params: Any) -> Any:
        return dynamo.call(self._client, operation, LedgerUnavailable,
                           f"feedback marks: {operation}", TableName=self._table, **params)

    def mark(self, export: bool = False, feedback: bool = False, jobs: Iterable[str] = ()
             ) -> None:
        """Note what the next run writes, unless it is noted already (a read, which costs
        the hot item less than a write)."""
        wanted = Pending(export, feedback, tuple(sorted(set(jobs))))
        if not wanted:
            return
        there = self._marked()
        missing = Pending(wanted.export and not there.export,
                          wanted.feedback and not there.feedback,
                          tuple(j for j in wanted.jobs if j not in there.jobs))
        if missing:
            self._write(missing)

    def _marked(self) -> Pending:
        item = self._call("get_item", Key=self._key("pending"), ConsistentRead=True).get("Item")
        return _pending(item or {})

    def _write(self, marks: Pending) -> None:
        sets = [name for name, on in zip(_FLAGS, (marks.export, marks.feedback),
                                         strict=True) if on]
        parts = []
        values: dict[str, Any] = {}
        if sets:
            parts.append("SET " + ", ".join(f"{name} = :one" for name in sets))
            values[":one"] = {"N": "1"}
        if marks.jobs:
            parts.append("ADD due_jobs :jobs")
            values[":jobs"] = {"SS": list(marks.jobs)}
        self._call("update_item", Key=self._key("pending"), UpdateExpression=" ".join(parts),
                   ExpressionAttributeValues=values)

    def take(self) -> Pending:
        """Remove every mark and return what was marked (one write, atomic)."""
        answer = self._call("update_item", Key=self._key("pending"),
                            UpdateExpression="REMOVE export_due, feedback_due, due_jobs",
                            ReturnValues="UPDATED_OLD")
        return _pending(answer.get("Attributes", {}))

    def put_back(self, taken: Pending) -> None:
        """Mark again what a failed run took."""
        self._write(taken)

    def count(self, days: Mapping[str, Mapping[str, int]]) -> None:
        """Add events to their days' counters (one write a day, nearly always one), on one
        of the day's shards."""
        for day, counts in days.items():
            names = {f"#c{i}": name for i, name in enumerate(counts)}
            values = {f":c{i}": {"N": str(n)} for i, n in enumerate(counts.values())}
            self._call("update_item", Key=self._key(f"day#{day}#{self._shard()}"),
                       UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}"
                                                           for i in range(len(counts))),
                       ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def days(self, dates: list[str]) -> dict[str, dict[str, int]]:
        """The counters of ``dates``, their shards added up (days without events absent)."""
        keys = [self._key(f"day#{d}#{n}") for d in dates for n in range(DAY_SHARDS)]
        found: dict[str, dict[str, int]] = {}
        for start in range(0, len(keys), MAX_BATCH_GET_KEYS):
            for item in self._get(keys[start:start + MAX_BATCH_GET_KEYS]):
                day = item[KEY_ATTRIBUTE]["S"].split("#")[-2]
                totals = found.setdefault(day, {})
                for name in DAY_COUNTS:
                    if name in item:
                        totals[name] = totals.get(name, 0) + int(float(item[name]["N"]))
        return found

    def _get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every item of one BatchGetItem, its unprocessed keys asked again (a run a
        minute has time; DynamoDB failing raises)."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            answer = dynamo.call(self._client, "batch_get_item", LedgerUnavailable,
                                 "feedback marks: batch_get_item", RequestItems=request)
            items += answer.get("Responses", {}).get(self._table, [])
            request = answer.get("UnprocessedKeys") or {}
        return items


def _pending(item: Mapping[str, Any]) -> Pending:
    return Pending("export_due" in item, "feedback_due" in item,
                   tuple(sorted(item.get("due_jobs", {}).get("SS", ()))))


def rates(days: list[Mapping[str, int]]) -> dict[str, float | None]:
    """Bounce (permanent only, as SES counts it) and complaint rates over ``days``."""
    totals = {name: sum(day.get(name, 0) for day in days) for name in ("sent", "bounced",
                                                                      "complained")}
    sent = totals["sent"]
    return {"bounce_rate_7d": totals["bounced"] / sent if sent else None,
            "complaint_rate_7d": totals["complained"] / sent if sent else None,
            "sent_7d": sent}


def feedback_document(marks: Marks, now: datetime) -> dict[str, Any]:
    """``status/feedback.json``."""
    dates = [(now - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(DAYS_SHOWN)]
    counts = marks.days(dates)
    return {"version": 1, "generated_at": rfc3339(now),
            "days": [{"date": d, **{n: counts.get(d, {}).get(n, 0) for n in DAY_COUNTS}}
                     for d in dates],
            **rates([counts.get(d, {}) for d in dates[:RATE_DAYS]])}


class Publisher:
    """The minute's run."""

    def __init__(self, marks: Marks, store: SuppressionStore, progress: JobProgress,
                 recorder: Recorder, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._marks = marks
        self._store = store
        self._progress = progress
        self._recorder = recorder
        self._now = now

    def run(self, bucket: str) -> Pending | None:
        """Write what is marked; what was written (``None``: nothing was marked)."""
        taken = self._marks.take()
        if not taken:
            return None
        try:
            self._write(bucket, taken)
        except BaseException:
            self._marks.put_back(taken)
            raise
        return taken

    def _write(self, bucket: str, taken: Pending) -> None:
        now = self._now()
        if taken.export:
            self._recorder.put(bucket, SUPPRESSION_EXPORT_KEY, self._store.export(now))
        if taken.feedback:
            document = feedback_document(self._marks, now)
            self._recorder.put(bucket, FEEDBACK_STATUS_KEY, document)
            _rate_metrics(document)
        for job in taken.jobs:
            self._progress.publish(bucket, job)  # a job whose item expired writes nothing


def _rate_metrics(document: Mapping[str, Any]) -> None:
    """The 7-day rates as percentages, for the alarms before SES's review thresholds; only
    once there are ``MIN_RATE_SENDS`` sends to make a rate of."""
    if document["sent_7d"] < MIN_RATE_SENDS:
        return
    for name, field in ((BOUNCE_RATE, "bounce_rate_7d"), (COMPLAINT_RATE, "complaint_rate_7d")):
        if document[field] is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Percent, value=100 * document[field])
