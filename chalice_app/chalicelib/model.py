"""What every stage shares: the parsed batch, and what happened to each mail.

The format modules (``chalicelib.formats``) turn a file into a ``Batch``; the
engine (``dispatch``), the pipeline, the recorder (``outcome``) and re-drive
speak only in these types and in ``Status``, never in a format's raw fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from chalicelib.errors import BatchFormatError

Address = tuple[str, str]  # (display name, addr-spec with an ASCII domain)


class Status(StrEnum):
    """What happened to one mail; receipts carry exactly these values."""

    SENT = "sent"  # SES accepted it now
    DUPLICATE = "duplicate"  # the ledger had it sent already
    FAILED = "failed"  # refused for good, now or earlier: never resent
    IN_PROGRESS = "in_progress"  # another invocation holds its claim
    HANDED_ON = "handed_on"  # not started before the deadline: goes on in a continuation
    PAUSED = "paused"  # the account stopped sending (paused, daily quota): re-drive it
    RETRY_LATER = "retry_later"  # transient trouble outlasted the retries: the batch is retried
    UNKNOWN = "unknown"  # SES's answer was lost and no Send event came yet: a retry settles it
    CANCELLED = "cancelled"  # a held batch cancelled before it was due (hold.py): never sent
    SUPPRESSED = "suppressed"  # on the suppression list (suppression.py): never sent, not failed


# Statuses another attempt of the whole batch will settle.
UNSETTLED = frozenset({Status.RETRY_LATER, Status.IN_PROGRESS, Status.UNKNOWN})
# Statuses a re-drive can fix once the cause is gone.
REDRIVABLE = frozenset({Status.FAILED, Status.PAUSED})
# Statuses that need nothing more from this batch object.
SETTLED = frozenset({Status.SENT, Status.DUPLICATE, Status.HANDED_ON, Status.CANCELLED,
                     Status.SUPPRESSED})


@dataclass(frozen=True, slots=True)
class Outcome:
    mail_id: str
    status: Status
    message_id: str | None = None
    reason: str | None = None
    # Settled by an earlier attempt (a replay): not counted as sent or failed again.
    replayed: bool = False

    def receipt(self) -> dict[str, Any]:
        """The receipt's entry for this mail."""
        entry: dict[str, Any] = {"mail_id": self.mail_id, "status": self.status.value}
        if self.message_id is not None:
            entry["message_id"] = self.message_id
        if self.reason is not None:
            entry["reason"] = self.reason
        if self.replayed:
            entry["replayed"] = True
        return entry


@dataclass(frozen=True, slots=True)
class Attachment:
    """An inline attachment (``content_base64``) or a reference to an object (``s3_key``)."""

    filename: str
    content_type: str
    # Kept as the batch's base64 text: the MIME part only rewraps it, so the
    # bytes are never decoded and encoded again.
    content_base64: str | None = None
    s3_key: str | None = None
    size: int | None = None  # bytes once decoded; for a reference, what the plugin said


@dataclass(frozen=True, slots=True)
class Meta:
    sender: Address
    reply_to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    content_type: str = "text/plain"
    charset: str = "utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    configuration_set: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    # What an unsubscribe from these mails means (``meta.list``); "" for none.
    list_name: str = ""
    # A version-2 job's ``meta.unsubscribe_mailto``: a bare address, or "".
    unsubscribe_mailto: str = ""


@dataclass(frozen=True, slots=True)
class Mail:
    id: str
    to: tuple[Address, ...]
    subject: str
    html: str | None = None
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A mail that breaks the format: recorded as failed, never sent."""

    mail_id: str
    error: BatchFormatError


@dataclass(frozen=True)
class Batch:
    batch_id: str
    created_at: datetime
    meta: Meta
    mails: tuple[Mail, ...]
    rejected: tuple[Rejected, ...] = ()
    redrive: int = 0
    part: int = 0  # a continuation's number, 0 for the batch as uploaded
    continuation_of: str | None = None  # the key of the batch a continuation goes on from
    # Which format module read it, and the document as that format writes it:
    # continuations and failed-mail batches are subsets of it (``formats.subset``).
    version: int = 1
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def mail_ids(self) -> frozenset[str]:
        return frozenset(mail.id for mail in self.mails)


# Version-2 notify jobs (docs/job-format.md): one notification, many recipients.


@dataclass(frozen=True, slots=True)
class Template:
    subject: str
    html: str
    text: str | None = None  # generated from the rendered HTML when absent


@dataclass(frozen=True, slots=True)
class Part:
    """One recipients file of a job, as the manifest describes it."""

    key: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class NotifyJob:
    """A parsed, validated job manifest."""

    job_id: str
    created_at: datetime
    meta: Meta  # cc, bcc, content_type and charset stay at their defaults
    template: Template
    context: dict[str, Any]
    parts: tuple[Part, ...]
    recipients: int
    attachments: tuple[Attachment, ...] = ()
    list_name: str = ""
    send_at: datetime | None = None
    # ``send_between`` as (start, end); the splitter checks both against its clock.
    send_between: tuple[datetime, datetime] | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """One valid row of a part file. ``row`` is its 0-based place in its part:
    with the part's index it names the recipient in outcomes."""

    row: int
    email: str  # bare addr-spec, as sent
    name: str = ""
    user_id: int | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    unsubscribe_url: str = ""  # computed by the plugin; required when the job names a list


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One SQS message: rows ``start``..``end`` (exclusive) of part ``part`` of a
    job, or, for a re-drive, the failed rows themselves in ``rows`` (raw lines)."""

    bucket: str
    job_id: str
    manifest_key: str
    part: int = 0
    start: int = 0
    end: int = 0
    rows: tuple[str, ...] = ()
    redrive: int = 0
    attempt: int = 0  # how many times its rest was handed back unsettled (SES or the ledger)
