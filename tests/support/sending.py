"""Test wiring for the dispatch stage: a moto ledger, a simulated clock, fake SES jobs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ReadTimeoutError
from support.clock import FakeClock
from support.fakes import FakeSes, client_error

from chalicelib.dispatch import Dispatcher, Job
from chalicelib.ledger import Ledger
from chalicelib.model import Mail, Meta
from chalicelib.ratelimit import RateLimiter
from chalicelib.retry import RetryPolicy
from chalicelib.send import SesSender

META = Meta(sender=("Blog", "news@example.org"))


def mail_ids(count: int, prefix: str = "m") -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(count)]


def jobs(ses: FakeSes, ids: list[str], batch_id: str = "b1", redrive: int = 0) -> list[Job]:
    """One job per id; the subject is the mail id, so the fake SES shows what went out."""
    sender = SesSender(ses)

    def job(mail_id: str) -> Job:
        mail = Mail(id=mail_id, to=(("", f"{mail_id}@example.net"),), subject=mail_id, text="hi")
        key = f"{batch_id}:{mail_id}:{redrive}"
        return Job(mail_id, key, lambda: sender.send_simple(mail, META))

    return [job(mail_id) for mail_id in ids]


@dataclass
class Invocation:
    """One simulated Lambda invocation: its own clock-driven deadline."""

    clock: FakeClock
    budget_s: float = 900.0
    started: float = field(init=False)

    def __post_init__(self):
        self.started = self.clock()

    def get_remaining_time_in_millis(self) -> int:
        return int((self.started + self.budget_s - self.clock()) * 1000)


def dispatcher(
    ledger: Ledger,
    clock: FakeClock,
    rate: float = 1000.0,
    workers: int = 4,
    attempts: int = 6,
    metrics=None,
    now=None,
) -> Dispatcher:
    return Dispatcher(
        ledger,
        RateLimiter(rate, clock=clock, sleep=clock.sleep),
        RetryPolicy(attempts=attempts, sleep=clock.sleep),
        workers=workers,
        metrics=metrics,
        clock=clock,
        sleep=clock.sleep,
        **({"now": now} if now else {}),
    )


class Calls:
    """The DynamoDB operations a client made, in order."""

    def __init__(self, client):
        self.names: list[str] = []
        client.meta.events.register(
            "before-call.dynamodb.*", lambda model, **_: self.names.append(model.name)
        )


class DynamoDown:
    """A DynamoDB client whose calls named in ``failing`` (all, if ``None``) answer with a
    server error; ``meta`` passes through."""

    def __init__(self, client, failing: set[str] | None = None):
        self._client, self._failing = client, failing

    def __getattr__(self, name):
        if name == "meta" or (self._failing is not None and name not in self._failing):
            return getattr(self._client, name)

        def fail(**_):
            raise client_error("InternalServerError", "DynamoDB is having a bad day", name, 500)

        return fail


class SerialClient:
    """A boto3 client whose API calls run one at a time.

    moto's in-process DynamoDB checks a ConditionExpression and writes the
    item in two Python steps with no lock, so two threads can both "win" a
    conditional put; real DynamoDB applies it atomically. Tests that race two
    invocations wrap the ledger's client in this so they test our code, not
    that gap in the mock. Attributes (``meta``, ...) pass through untouched.
    """

    _lock = threading.Lock()

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name.startswith("_") or name == "meta" or not callable(attr):
            return attr

        def serial(*args, **kwargs):
            with SerialClient._lock:
                return attr(*args, **kwargs)

        return serial


class AnswerLost:
    """A client whose first call of ``method`` (a name, or several) that ``matches`` its
    parameters is made but
    its answer lost: made again at once when ``retried`` (as botocore's own retry does;
    moto, unlike AWS, ignores the request token), else the caller gets a read timeout."""

    def __init__(self, client, method: str | tuple[str, ...], retried: bool = True,
                 matches: Callable[[dict], bool] = lambda params: True):
        self._client, self._retried, self._matches = client, retried, matches
        self._methods = (method,) if isinstance(method, str) else method
        self.lost = 0

    def __getattr__(self, name):
        if name not in self._methods:
            return getattr(self._client, name)

        def call(**params):
            if self.lost or not self._matches(params):
                return getattr(self._client, name)(**params)
            self.lost += 1
            getattr(self._client, name)(**params)  # done; the answer never arrives
            if not self._retried:
                raise ReadTimeoutError(endpoint_url="https://aws.invalid")
            return getattr(self._client, name)(**params)

        return call


class FailsOnce:
    """A client whose first call of ``method`` that ``matches`` its parameters answers
    with a server error without doing anything."""

    def __init__(self, client, method: str, matches: Callable[[dict], bool] = lambda p: True):
        self._client, self._method, self._matches = client, method, matches
        self.failed = 0

    def __getattr__(self, name):
        if name != self._method:
            return getattr(self._client, name)

        def call(**params):
            if not self.failed and self._matches(params):
                self.failed += 1
                raise client_error("InternalError", "a bad moment", name, 500)
            return getattr(self._client, name)(**params)

        return call


class PublishingSender(SesSender):
    """SES's events arrive while the sender waits: ``publish()`` runs after each SES call
    (the worlds' ``publish_send_events``)."""

    def __init__(self, ses_client, sesv2_client=None, *, publish: Callable[[], None]):
        super().__init__(ses_client, sesv2_client)
        self._publish = publish

    def _call(self, method, **params):
        try:
            return super()._call(method, **params)
        finally:
            self._publish()


def leased_tokens(client, table: str) -> int:
    """Send tokens leased from the account's schedule so far, every second together
    (``SharedRateLimiter``'s items in the ledger table)."""
    return sum(int(item["used"]["N"]) for item in client.scan(TableName=table)["Items"]
               if "#rate#" in item["id"]["S"])
