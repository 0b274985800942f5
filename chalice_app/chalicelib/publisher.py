"""What the sender publishes for WordPress and the operator, at most once a minute.

The handlers that change things only mark what changed, in one item of the ledger's
table (``<namespace>#feedback#pending``): the inbox (the suppression export), SES's
events (the feedback status, the jobs they were about). A scheduled run a minute
apart (``app.publish_status``) writes what is marked:

- ``suppressions/export.json``, rebuilt from the suppression table;
- ``status/feedback.json``: per-day counts of the last ``DAYS_SHOWN`` days and the
  7-day bounce and complaint rates (also as metrics, which the alarms watch);
- the marked jobs' ``status.json``, with their feedback counts.

So a burst of a thousand unsubscribes writes the export once, and it is never older
than about a minute. The marks are cleared only if nothing marked meanwhile (the
item's ``mark_rev`` is unchanged); otherwise the next run writes again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.config import FEEDBACK_STATUS_KEY, SUPPRESSION_EXPORT_KEY
from chalicelib.errors import LedgerUnavailable
from chalicelib.ledger import KEY_ATTRIBUTE
from chalicelib.observe import metrics
from chalicelib.outcome import Recorder
from chalicelib.progress import JobProgress
from chalicelib.suppression import SuppressionStore, rfc3339

DAYS_SHOWN = 14
RATE_DAYS = 7
DAY_COUNTS = ("sent", "delivered", "bounced", "soft_bounced", "complained", "rejected",
              "rendering_failed", "opens", "clicks")
BOUNCE_RATE, COMPLAINT_RATE = "BounceRate7d", "ComplaintRate7d"


@dataclass(frozen=True)
class Pending:
    """What is marked for the next run."""

    rev: int
    export: bool
    feedback: bool
    jobs: tuple[str, ...]


class Marks:
    """The pending item and the per-day counters, in the ledger's table."""

    def __init__(self, dynamodb_client: Any, table: str, namespace: str):
        self._client = dynamodb_client
        self._table = table
        self._namespace = namespace

    def _key(self, name: str) -> dict[str, Any]:
        return {KEY_ATTRIBUTE: {"S": f"{self._namespace}#feedback#{name}"}}

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise
            raise LedgerUnavailable(f"feedback marks: {operation}: {exc}") from exc
        except BotoCoreError as exc:
            raise LedgerUnavailable(f"feedback marks: {operation}: {exc}") from exc

    def mark(self, export: bool = False, feedback: bool = False, jobs: Iterable[str] = ()
             ) -> None:
        """Note what the next run writes."""
        sets = [name for name, on in (("export_due", export), ("feedback_due", feedback)) if on]
        jobs = sorted(set(jobs))
        expression = "ADD mark_rev :one" + (", due_jobs :jobs" if jobs else "")
        if sets:
            expression += " SET " + ", ".join(f"{name} = :one" for name in sets)
        values: dict[str, Any] = {":one": {"N": "1"}}
        if jobs:
            values[":jobs"] = {"SS": jobs}
        self._call("update_item", TableName=self._table, Key=self._key("pending"),
                   UpdateExpression=expression, ExpressionAttributeValues=values)

    def count(self, days: Mapping[str, Mapping[str, int]]) -> None:
        """Add events to their days' counters (one write a day, nearly always one)."""
        for day, counts in days.items():
            names = {f"#c{i}": name for i, name in enumerate(counts)}
            values = {f":c{i}": {"N": str(n)} for i, n in enumerate(counts.values())}
            self._call("update_item", TableName=self._table, Key=self._key(f"day#{day}"),
                       UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}"
                                                           for i in range(len(counts))),
                       ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def pending(self) -> Pending | None:
        item = self._call("get_item", TableName=self._table, Key=self._key("pending"),
                          ConsistentRead=True).get("Item")
        if not item:
            return None
        return Pending(int(item["mark_rev"]["N"]), "export_due" in item, "feedback_due" in item,
                       tuple(item.get("due_jobs", {}).get("SS", ())))

    def clear(self, seen: Pending) -> bool:
        """Clear the marks a run wrote, unless more came meanwhile."""
        try:
            self._call("update_item", TableName=self._table, Key=self._key("pending"),
                       UpdateExpression="REMOVE export_due, feedback_due, due_jobs",
                       ConditionExpression="mark_rev = :rev",
                       ExpressionAttributeValues={":rev": {"N": str(seen.rev)}})
        except ClientError:  # marked meanwhile: the next run writes again
            return False
        return True

    def days(self, dates: list[str]) -> dict[str, dict[str, int]]:
        """The counters of ``dates`` (days without events are absent)."""
        keys = [self._key(f"day#{d}") for d in dates]
        answer = self._call("batch_get_item", RequestItems={self._table: {"Keys": keys}})
        found: dict[str, dict[str, int]] = {}
        for item in answer.get("Responses", {}).get(self._table, []):
            day = item[KEY_ATTRIBUTE]["S"].rpartition("#")[2]
            found[day] = {name: int(float(item[name]["N"])) for name in DAY_COUNTS if name in item}
        return found


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
        pending = self._marks.pending()
        if pending is None or not (pending.export or pending.feedback or pending.jobs):
            return None
        now = self._now()
        if pending.export:
            self._recorder.put(bucket, SUPPRESSION_EXPORT_KEY, self._store.export(now))
        if pending.feedback:
            document = feedback_document(self._marks, now)
            self._recorder.put(bucket, FEEDBACK_STATUS_KEY, document)
            _rate_metrics(document)
        for job in pending.jobs:
            self._progress.publish(bucket, job)
        self._marks.clear(pending)
        return pending


def _rate_metrics(document: Mapping[str, Any]) -> None:
    """The 7-day rates as percentages, for the alarms before SES's review thresholds."""
    for name, field in ((BOUNCE_RATE, "bounce_rate_7d"), (COMPLAINT_RATE, "complaint_rate_7d")):
        if document[field] is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Percent, value=100 * document[field])
