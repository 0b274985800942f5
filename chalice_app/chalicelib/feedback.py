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

from chalicelib import fields
from chalicelib.config import JOB_TAG, LEDGER_KEY_TAG, Settings
from chalicelib.errors import BatchFormatError
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
# SES sends to at most 50 recipients a mail: an event listing more is not SES's.
MAX_RECIPIENTS = 50
# Tags and feedback ids are short; anything longer is cut (an SES tag value is at most 256).
MAX_ID_CHARS = 256
MAX_ADDRESS_CHARS = 320  # 64 + "@" + 255


@dataclass(frozen=True)
class Event:
    """One SES event, as much of it as Postbag uses."""

    kind: str  # SES's eventType
    at: datetime
    job: str | None = None  # the postbag-job tag
    recipients: tuple[str, ...] = ()  # bounced or complained addresses
    permanent: bool = False  # a Permanent bounce
    feedback_id: str = ""  # SES's id of the bounce or complaint (the same on a redelivery)


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


def _records(records: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for record in records:
        try:
            event = json.loads(record["Sns"]["Message"])
            if not isinstance(event, dict) or not isinstance(event.get("mail"), dict):
                raise TypeError("no mail in the event")
        except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
            logger.warning("not an SES event, skipped", extra={"error": repr(exc)[:200]})
            continue
        yield event


def _tag(mail: dict[str, Any], name: str) -> str | None:
    values = mail.get("tags", {}).get(name) if isinstance(mail.get("tags"), dict) else None
    return str(values[0])[:MAX_ID_CHARS] if isinstance(values, list) and values else None


def sends(records: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(ledger key digest, SES MessageId) for each Send event in SNS records."""
    for event in _records(records):
        if event.get("eventType") != "Send":
            continue
        mail = event["mail"]
        digest = _tag(mail, LEDGER_KEY_TAG)
        if digest is not None and isinstance(mail.get("messageId"), str):
            yield digest, mail["messageId"]


def _time(value: Any, now: datetime) -> datetime:
    """The event's time, never after ``now``: a change dated ahead would win over every
    later one (a remove) until then."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return now
    return min(moment, now)


def _addresses(listed: Any, kind: str) -> tuple[str, ...]:
    """The well-formed addresses of an event's recipient list, at most ``MAX_RECIPIENTS``."""
    if not isinstance(listed, list):
        return ()
    if len(listed) > MAX_RECIPIENTS:
        logger.warning("SES event lists more recipients than a mail has, first ones kept",
                       extra={"event": kind, "listed": len(listed)})
    found = []
    for entry in listed[:MAX_RECIPIENTS]:
        address = entry.get("emailAddress") if isinstance(entry, dict) else None
        if not isinstance(address, str) or len(address) > MAX_ADDRESS_CHARS:
            logger.warning("SES event recipient not an address, skipped", extra={"event": kind})
            continue
        try:
            found.append(fields.bare_address(address, "emailAddress", kind))
        except BatchFormatError:
            logger.warning("SES event recipient not an address, skipped", extra={"event": kind})
    return tuple(found)


def _event(raw: dict[str, Any], now: datetime) -> Event | None:
    """One counted event; ``None`` for the others (DeliveryDelay, Subscription) and for a
    bounce or complaint without its details, which are logged and skipped."""
    kind = raw.get("eventType")
    if not isinstance(kind, str) or kind not in COUNTED:
        return None
    mail = raw["mail"]
    detail: Any = {}
    recipients: tuple[str, ...] = ()
    if kind in _RECIPIENTS:
        part, listed = _RECIPIENTS[kind]
        detail = raw.get(part)
        if not isinstance(detail, dict):
            logger.warning("SES event without its details, skipped",
                           extra={"event": kind, "missing": part})
            return None
        recipients = _addresses(detail.get(listed), kind)
    feedback_id = detail.get("feedbackId") or mail.get("messageId") or ""
    return Event(kind=kind, at=_time(mail.get("timestamp"), now), job=_tag(mail, JOB_TAG),
                 recipients=recipients, permanent=detail.get("bounceType") == "Permanent",
                 feedback_id=str(feedback_id)[:MAX_ID_CHARS])


def events(records: Iterable[Any], now: datetime) -> Iterator[Event]:
    """The counted events in SNS records; others (DeliveryDelay, Subscription) skipped."""
    for raw in _records(records):
        event = _event(raw, now)
        if event is not None:
            yield event


def suppress(store: SuppressionStore, settings: Settings, event: Event) -> int:
    """Put the event's addresses on the list where it says so; how many changed."""
    changed = 0
    for address in event.recipients:
        if event.kind == "Bounce" and not event.permanent:
            if not store.soft_bounce(address, event.feedback_id, event.at,
                                     settings.soft_bounce_limit, settings.soft_bounce_days):
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


def handle(stages: FeedbackStages, records: Iterable[Any], now: datetime) -> Tallies:
    """Apply one notification's events: the list, the day's and the jobs' counters, and
    the marks for the minute's run (only jobs whose item is still there). Raises
    ``TransientError`` (DynamoDB failing) for Lambda to retry the notification."""
    tallies, changed = Tallies(), 0
    for event in events(records, now):
        tallies.add(event)
        changed += suppress(stages.store, stages.settings, event)
    if not tallies.days:
        return tallies
    stages.marks.count(tallies.days)
    counted = [job for job, counts in tallies.jobs.items()
               if stages.progress.feedback(job, counts)]
    stages.marks.mark(export=bool(changed), feedback=True, jobs=counted)
    return tallies
