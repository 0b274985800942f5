"""A fake SES client (v1, and v2's ``SendEmail``) for tests and benchmarks, with faults on
demand.

moto's SES never throttles, never pauses and cannot fail half-way, which is
exactly what the exactly-once tests need; this fake does, and raises the same
botocore exceptions a real client raises (``ClientError`` built from an
``error_response`` dict), so ``chalicelib.send`` translates them as in production.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.utils import getaddresses
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

ENDPOINT = "https://email.us-east-1.amazonaws.com"


def client_error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    """A ``ClientError`` shaped like the ones botocore raises for an SES error response."""
    kind = "Sender" if status < 500 else "Receiver"
    response = {
        "Error": {"Type": kind, "Code": code, "Message": message},
        "ResponseMetadata": {"RequestId": "fake-request", "HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@dataclass(frozen=True)
class Accepted:
    """One message SES accepted."""

    message_id: str
    at: float  # clock() when the call arrived: what SES's rate limit counts
    operation: str  # "SendEmail", "SendRawEmail" or "SendEmailV2" (SES v2's SendEmail)
    recipients: tuple[str, ...]  # addr-specs, lower case
    subject: str
    params: dict[str, Any] = field(repr=False)


def _addresses(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(addr.lower() for _, addr in getaddresses(list(values)) if addr)


def _simple_recipients(params: dict[str, Any]) -> tuple[str, ...]:
    dest = params.get("Destination", {})
    return _addresses([*dest.get("ToAddresses", ()), *dest.get("CcAddresses", ()),
                       *dest.get("BccAddresses", ())])


def _raw_recipients(params: dict[str, Any], parsed: Any) -> tuple[str, ...]:
    if params.get("Destinations"):
        return _addresses(params["Destinations"])
    return _addresses([*parsed.get_all("To", []), *parsed.get_all("Cc", [])])


class FakeSes:
    """Stands in for ``boto3.client("ses")``. Thread-safe.

    latency: seconds each send call takes (through ``sleep``, so tests can fake it).
    fail_after: after this many send calls, every further call raises ``hard_failure()``
        (default: the endpoint cannot be reached, as when the network goes away).
    throttle_share: share of calls refused with ``Throttling`` (drawn from ``seed``).
    reject: recipient addresses SES refuses with ``MessageRejected`` (a set you may change).
    paused: account sending paused (``AccountSendingPausedException``).
    daily_quota: after this many accepted mails, ``Throttling: Daily message quota exceeded.``
    """

    def __init__(
        self,
        latency: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        fail_after: int | None = None,
        hard_failure: Callable[[], Exception] = lambda: EndpointConnectionError(
            endpoint_url=ENDPOINT
        ),
        throttle_share: float = 0.0,
        seed: int = 0,
        reject: Iterable[str] = (),
        paused: bool = False,
        daily_quota: int | None = None,
        max_send_rate: float = 14.0,
        lose_answer_share: float = 0.0,
        hang_seconds: float = 0.0,
    ):
        self.latency = latency
        self.fail_after = fail_after
        self.hard_failure = hard_failure
        self.throttle_share = throttle_share
        self.reject = {addr.lower() for addr in reject}
        self.paused = paused
        self.daily_quota = daily_quota
        self.max_send_rate = max_send_rate
        # Share of accepted calls whose answer never arrives (a read timeout after SES
        # took the mail): the ambiguous case.
        self.lose_answer_share = lose_answer_share
        # How long a call whose answer is lost hangs first (the client's read timeout).
        self.hang_seconds = hang_seconds
        self.lost_answers = 0
        self.accepted: list[Accepted] = []
        self.calls = 0
        self.throttled = 0
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random(seed)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- the SES API ---------------------------------------------------------------

    def send_email(self, **params: Any) -> dict[str, Any]:
        """v1's ``SendEmail``, or v2's (its ``Content``): one fake serves both clients."""
        if "Content" in params:
            subject = params["Content"]["Simple"]["Subject"]["Data"]
            return self._send("SendEmailV2", params, _simple_recipients(params), subject)
        subject = params.get("Message", {}).get("Subject", {}).get("Data", "")
        return self._send("SendEmail", params, _simple_recipients(params), subject)

    def send_raw_email(self, **params: Any) -> dict[str, Any]:
        parsed = message_from_bytes(params["RawMessage"]["Data"])
        subject = str(parsed.get("Subject", ""))
        return self._send("SendRawEmail", params, _raw_recipients(params, parsed), subject)

    def get_send_quota(self) -> dict[str, Any]:
        with self._lock:
            sent = len(self.accepted)
        return {
            "Max24HourSend": float(self.daily_quota if self.daily_quota is not None else 50000),
            "MaxSendRate": float(self.max_send_rate),
            "SentLast24Hours": float(sent),
            "ResponseMetadata": {"RequestId": "fake-request", "HTTPStatusCode": 200},
        }

    # --- what happened ---------------------------------------------------------------

    def send_events(self) -> list[tuple[str, str]]:
        """(ledger key digest, MessageId) of every accepted mail that carried one: what
        SES's Send events tell ``on_ses_event``."""
        with self._lock:
            accepted = list(self.accepted)
        return [
            (tag["Value"], a.message_id)
            for a in accepted for tag in a.params.get("Tags", a.params.get("EmailTags", ()))
            if tag["Name"] == "postbag-key"
        ]

    def subjects(self) -> list[str]:
        with self._lock:
            return [a.subject for a in self.accepted]

    def times(self) -> list[float]:
        with self._lock:
            return [a.at for a in self.accepted]

    # --- internals -------------------------------------------------------------------

    def _send(self, operation: str, params: dict[str, Any], recipients: tuple[str, ...],
              subject: str) -> dict[str, Any]:
        arrived = self._clock()
        with self._lock:
            self.calls += 1
            error = self._fault(operation, recipients)
            if error is None:
                message_id = f"fake-{next(self._ids):08d}"
                self.accepted.append(
                    Accepted(message_id, arrived, operation, recipients, subject, params)
                )
                if self.lose_answer_share and self._random.random() < self.lose_answer_share:
                    self.lost_answers += 1
                    error = ReadTimeoutError(endpoint_url=ENDPOINT)
        if self.latency:
            self._sleep(self.latency)
        if isinstance(error, ReadTimeoutError) and self.hang_seconds:
            self._sleep(self.hang_seconds)
        if error is not None:
            raise error
        return {
            "MessageId": message_id,
            "ResponseMetadata": {"RequestId": "fake-request", "HTTPStatusCode": 200},
        }

    def _fault(self, operation: str, recipients: tuple[str, ...]) -> Exception | None:
        """The error this call gets, decided under the lock, or ``None``."""
        if self.fail_after is not None and self.calls > self.fail_after:
            return self.hard_failure()
        if self.paused:
            return client_error(
                "AccountSendingPausedException", "Email sending is disabled for this account.",
                operation,
            )
        if self.daily_quota is not None and len(self.accepted) >= self.daily_quota:
            return client_error("Throttling", "Daily message quota exceeded.", operation)
        if self.throttle_share and self._random.random() < self.throttle_share:
            self.throttled += 1
            return client_error("Throttling", "Maximum sending rate exceeded.", operation)
        refused = sorted(set(recipients) & self.reject)
        if refused:
            return client_error(
                "MessageRejected", f"Address blacklisted: {', '.join(refused)}", operation
            )
        return None
