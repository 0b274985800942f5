"""SES's own events, as SNS delivers them: evidence for the ledger, and feedback.

The configuration set Postbag sends with publishes each mail's events to an
SNS topic; each notification is one SES event (JSON) whose ``mail.tags``
carry the ledger key's digest under ``postbag-key`` and, for a notify job's
mails, the job under ``postbag-job``.

- A ``Send`` event is SES's evidence that it accepted the mail, which settles
  a send whose answer was lost (``ledger.py``, "evidence").
- A permanent ``Bounce`` and a ``Complaint`` put the address on the
  suppression list for all mail (``suppression.py``); a transient bounce does
  not, unless ``soft_bounce_limit`` of them come within ``soft_bounce_days``.
- Every event is counted per day (``status/feedback.json``, its 7-day bounce
  and complaint rates) and, for a notify job's mail, in the job's status.

Untagged events (mail sent by something else through the same set) count per
day but touch neither the ledger nor a job. Counting is at least once: SNS or
Lambda may deliver a notification twice, which may count it twice (the
suppression list itself is idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.config import JOB_TAG, LEDGER_KEY_TAG, Settings
from chalicelib.observe import logger
from chalicelib.progress import JobProgress
from chalicelib.publisher import Marks
from chalicelib.suppression import ADD, SCOPE_ALL, Change, SuppressionStore

# SES's event types and what each counts as (per day and per job).
COUNTED = {"Send": "sent", "Delivery": "delivered", "Bounce": "bounced",
           "Complaint": "complained", "Reject": "rejected", "Rendering Failure": "rendering_failed",
           "Open": "opens", "Click": "clicks"}
# Who an event is about, by type: the part of the event that lists them.
_RECIPIENTS = {"Bounce": ("bounce", "bouncedRecipients"),
               "Complaint": ("complaint", "complainedRecipients")}


@dataclass(frozen=True)
class Event:
    """One SES event, as much of it as Postbag uses."""

    kind: str  # SES's eventType
    at: datetime
    job: str | None = None  # the postbag-job tag
    recipients: tuple[str, ...] = ()  # bounced or complained addresses
    permanent: bool = False  # a Permanent bounce


@dataclass
class Tallies:
    """What a notification's events add up to: per day, per job, and the changes to the
    suppression list."""

    days: dict[str, dict[str, int]] = field(default_factory=dict)
    jobs: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        name = _counted(event)
        day = self.days.setdefault(event.at.strftime("%Y-%m-%d"), {})
        day[name] = day.get(name, 0) + 1
        if event.job is not None and event.kind != "Send":
            job = self.jobs.setdefault(event.job, {})
            job[name] = job.get(name, 0) + 1


def _counted(event: Event) -> str:
    if event.kind == "Bounce" and not event.permanent:
        return "soft_bounced"
    return COUNTED[event.kind]


def _records(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in records:
        try:
            event = json.loads(record["Sns"]["Message"])
            if not isinstance(event, dict) or not isinstance(event.get("mail"), dict):
                raise TypeError("no mail in the event")
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            logger.warning("not an SES event, skipped", extra={"error": repr(exc)})
            continue
        yield event


def _tag(mail: dict[str, Any], name: str) -> str | None:
    values = mail.get("tags", {}).get(name) if isinstance(mail.get("tags"), dict) else None
    return str(values[0]) if isinstance(values, list) and values else None


def sends(records: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(ledger key digest, SES MessageId) for each Send event in SNS records."""
    for event in _records(records):
        if event.get("eventType") != "Send":
            continue
        mail = event["mail"]
        digest = _tag(mail, LEDGER_KEY_TAG)
        if digest is not None and isinstance(mail.get("messageId"), str):
            yield digest, mail["messageId"]


def _time(value: Any, fallback: datetime) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return fallback


def events(records: Iterable[dict[str, Any]], now: datetime) -> Iterator[Event]:
    """The counted events in SNS records; others (DeliveryDelay, Subscription) skipped."""
    for raw in _records(records):
        kind = raw.get("eventType")
        if kind not in COUNTED:
            continue
        mail = raw["mail"]
        detail = raw.get(_RECIPIENTS.get(kind, ("", ""))[0]) or {}
        listed = detail.get(_RECIPIENTS[kind][1], []) if kind in _RECIPIENTS else []
        recipients = tuple(r["emailAddress"] for r in listed
                           if isinstance(r, dict) and isinstance(r.get("emailAddress"), str))
        yield Event(kind=str(kind), at=_time(mail.get("timestamp"), now), job=_tag(mail, JOB_TAG),
                    recipients=recipients, permanent=detail.get("bounceType") == "Permanent")


def suppress(store: SuppressionStore, settings: Settings, event: Event) -> int:
    """Put the event's addresses on the list where it says so; how many changed."""
    changed = 0
    for address in event.recipients:
        if event.kind == "Bounce" and not event.permanent:
            if not store.soft_bounce(address, event.at, settings.soft_bounce_limit,
                                     settings.soft_bounce_days):
                continue
        reason = "complaint" if event.kind == "Complaint" else "bounce"
        changed += store.apply(Change(ADD, SCOPE_ALL, address, reason, "ses", event.at))
    return changed


@dataclass(frozen=True)
class FeedbackStages:
    """What the events handler writes to, built once per instance by ``app.py``."""

    settings: Settings
    store: SuppressionStore
    marks: Marks
    progress: JobProgress


def handle(stages: FeedbackStages, records: Iterable[dict[str, Any]], now: datetime
           ) -> Tallies:
    """Apply one notification's events: the list, the day's and the jobs' counters, and
    the marks for the minute's run. Raises ``TransientError`` (DynamoDB failing) for
    Lambda to retry the notification."""
    tallies, changed = Tallies(), 0
    for event in events(records, now):
        tallies.add(event)
        changed += suppress(stages.store, stages.settings, event)
    if not tallies.days:
        return tallies
    stages.marks.count(tallies.days)
    for job, counts in tallies.jobs.items():
        stages.progress.feedback(job, counts)
    stages.marks.mark(export=bool(changed), feedback=True, jobs=tallies.jobs)
    return tallies
