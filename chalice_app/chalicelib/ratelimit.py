"""How fast the sender may send, and the limiters that hold it to that.

SES counts its maximum send rate per second over the whole account.
``SharedRateLimiter`` shares it between every instance that sends, through
DynamoDB; ``RateLimiter`` paces one instance, and ``instance_share`` is one
instance's equal share, the fallback when DynamoDB cannot be asked.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.config import Settings
from chalicelib.errors import ConfigurationError, PostbagError, SendAmbiguous, SesUnavailable
from chalicelib.ledger import KEY_ATTRIBUTE, TTL_ATTRIBUTE
from chalicelib.observe import logger
from chalicelib.send import translate


def reserved_concurrency(lambda_client: Any, function_name: str) -> int:
    """How many instances of the function Lambda lets run at once, as Lambda enforces it.

    Read from Lambda rather than told in a setting, so that the share cannot
    drift from what ``.chalice/config.json`` reserved (or a stage added by hand
    forgot to say).
    """
    try:
        got = lambda_client.get_function_concurrency(FunctionName=function_name)
    except (ClientError, BotoCoreError) as exc:
        raise ConfigurationError(
            f"cannot read the reserved concurrency of {function_name}: {exc}"
        ) from exc
    if not got.get("ReservedConcurrentExecutions"):
        raise ConfigurationError(
            f"{function_name} has no reserved concurrency, so SES's rate cannot be shared: "
            "set reserved_concurrency for its stage in .chalice/config.json, "
            "or POSTBAG_MAX_SEND_RATE"
        )
    return int(got["ReservedConcurrentExecutions"])


def account_rate(
    settings: Settings, ses_client: Any, on_quota: Callable[[dict], None] | None = None
) -> float:
    """Mails per second for the whole account, whatever sends: ``POSTBAG_MAX_SEND_RATE``
    when set, else SES's ``MaxSendRate`` (one ``GetSendQuota`` call, whose answer goes
    to ``on_quota``: ``account.AccountReport.publish``)."""
    if settings.max_send_rate > 0:
        return settings.max_send_rate
    try:
        quota = ses_client.get_send_quota()
    except (ClientError, BotoCoreError) as exc:
        error = translate(exc)
        # A read: a lost answer is no more than SES being unavailable.
        raise (SesUnavailable(str(error)) if isinstance(error, SendAmbiguous) else error) from exc
    if on_quota is not None:
        on_quota(quota)
    return float(quota["MaxSendRate"])


def instance_share(rate: float, concurrency: Callable[[], int]) -> float:
    """One instance's equal share of ``rate``, the account's (configured or SES's): divided
    by ``concurrency()`` whatever its source, or the instances together exceed it."""
    return rate / concurrency()


class RateLimiter:
    """Grants send slots, never more than ``rate`` in any one-second window.

    Two rules. Slots are spaced evenly (``1/rate`` apart, stretched by
    ``guard``) so SES sees a steady stream, not a burst at the start of each
    second; the spacing follows the planned slots, so a wake-up that comes a
    little late (sleep overshoot, the GIL) is made up for by the next ones,
    if it is less than ``catch_up`` seconds late. And the slot ``rate`` grants back must be at
    least ``1 + guard`` seconds old, checked on the real grant times: that
    rule alone holds the limit, whatever the spacing does. ``guard`` leaves
    room for the jitter between a grant and the request reaching SES.

    The caller holds the lock while it waits for its slot, so grants happen in
    order and exactly one thread sleeps at a time (no thundering herd).
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        guard: float = 0.02,
        catch_up: float = 0.5,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # A fractional rate above 1 cannot be kept in every window: round down.
        self.per_window = max(1, math.floor(rate))
        self._window = 1.0 + guard
        self._interval = self._window / rate
        self._catch_up = catch_up
        self._clock = clock
        self._sleep = sleep
        self._granted: deque[float] = deque(maxlen=self.per_window)
        self._planned = -math.inf
        self._lock = threading.Lock()

    def _next_slot(self, now: float) -> float:
        slot = self._planned + self._interval
        if slot < now - self._catch_up:
            slot = now  # idle, or hopelessly late: start the plan afresh from here
        if len(self._granted) == self.per_window:
            slot = max(slot, self._granted[0] + self._window)
        return slot

    def acquire(self, timeout: float | None = None,
                wanted: Callable[[], int] | None = None) -> float | None:
        """Wait for the next slot and return its time; ``None`` if it is over ``timeout`` s away.

        A refused slot is not taken, so the next caller may still use it. ``wanted`` (the
        shared limiter's lease hint) means nothing here: this limiter leases nothing.
        """
        with self._lock:
            now = self._clock()
            slot = self._next_slot(now)
            if timeout is not None and slot - now > timeout:
                return None
            while now < slot:
                self._sleep(slot - now)
                now = self._clock()
            self._planned = slot
            self._granted.append(now)
            return now


class Limiter(Protocol):
    """What the engine asks of a limiter: a send slot, or ``None`` past ``timeout`` seconds;
    ``wanted`` says how many slots the caller's run still needs, this one included."""

    def acquire(self, timeout: float | None = None,
                wanted: Callable[[], int] | None = None) -> float | None: ...


# The shared limiter's leases: about this many DynamoDB calls a second, all instances
# together, at the full rate (25 tokens a lease at 500 mails/s, 50 ms of the schedule):
# one call costs ~1 ms of CPU, so a lease per 25 mails keeps it near 0.04 ms a mail.
# Leases of 100 ms (10 a second) saved ~0.02 ms a mail, but the one e2e run with them
# started 521 sends in its busiest second at R = 500 (bench/README.md): kept at 20
# until a run shows longer leases never start more than R in a second.
LEASES_PER_SECOND = 20
# After DynamoDB fails, the local share is used this long before asking it again.
FALLBACK_SECONDS = 10.0
# Lambda's default concurrency for a whole account: the most instances a function with an
# unknown reservation could have.
UNKNOWN_INSTANCES = 1000
# Lease items outlive their second only to be cleaned up by the table's TTL.
LEASE_TTL_SECONDS = 3600
# How late after its slot a token may still be used (seconds); later, it is forfeit.
LATE_SECONDS = 0.01
# Slots are spaced (1 + LATE_SECONDS + GUARD) / rate seconds apart: lateness cannot add
# up to more than the rate in any one-second window, and GUARD leaves room for the
# jitter between a grant and the request reaching SES (as RateLimiter's guard does).
GUARD = 0.01


class SharedRateLimiter:
    """The account's send rate, shared by every instance of every path that sends.

    SES counts ``MaxSendRate`` over the whole account, so instances lease send
    tokens from one DynamoDB item per wall-clock second in the ledger table:
    ``UpdateItem ADD used :n`` on condition that ``used`` stays within the
    second's tokens. A lease holds a few tokens (``rate / LEASES_PER_SECOND``),
    so calls stay at tens a second whatever the number of instances.

    Token ``u`` of second ``S`` is a slot at ``S + u * (1 + LATE + GUARD) / rate``:
    never used before it, and forfeit ``LATE_SECONDS`` after it (or at ``S + 1``).
    The account's sends thus follow one evenly spaced schedule, and no
    one-second window, aligned or not, holds more than the rate: without the
    lateness bound, tokens nobody used early in a second (a job starting at
    its end) would all go at once, just before the next second's. A lease
    that finds the schedule behind the clock asks for the tokens whose slots
    have passed too, and forfeits them, so it catches up in one call. Tokens
    an instance holds when they go stale are lost, which only slows, never
    speeds.

    Once its second is used up, an instance leases the next second's tokens
    (never further ahead), so that a lease's latency passes before their
    slots, not after them: leased only once the second had begun, its first
    slots went by while every instance waited for its lease, every second (4
    instances x 80 threads on the stand-in, 30 ms added to each lease: 472
    grants a second, against 490 leasing ahead). Within a second, leases cost
    no slot: the other instances hold tokens meanwhile.

    When DynamoDB fails the instance falls back to ``fallback_rate`` (a
    conservative share of the rate, given by the caller) for
    ``FALLBACK_SECONDS``, then asks DynamoDB again. A callable share is asked
    for the first time it is needed, so that an instance whose DynamoDB
    answers never pays for it (the batch function reads its reserved
    concurrency from Lambda); if it cannot be learnt, the instance assumes
    ``UNKNOWN_INSTANCES`` of its kind. Instances' clocks are
    NTP-synchronised to a few milliseconds, which the schedule does not cover.
    """

    def __init__(
        self,
        dynamodb_client: Any,
        table: str,
        namespace: str,
        rate: float,
        fallback_rate: float | Callable[[], float],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lease: int | None = None,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._client = dynamodb_client
        self._table = table
        self._namespace = namespace
        self.rate = rate
        self._interval = (1 + LATE_SECONDS + GUARD) / rate
        self.per_second = max(1, math.floor(1 / self._interval))
        self.lease_size = lease or max(1, math.ceil(rate / LEASES_PER_SECOND))
        self._clock = clock
        self._sleep = sleep
        self._fallback_rate = fallback_rate
        self._fallback: RateLimiter | None = None
        self._share_lock = threading.Lock()
        self._second = -1  # the second the tokens in hand belong to (at most the next one)
        self._tokens = range(0)  # those tokens, in order (a range: a lease may hold many)
        self._seen = 0  # the second's tokens leased by anyone, as last seen
        self._used_up = False  # the second has no tokens left for anyone
        self._fallback_until = -math.inf
        self._lock = threading.Lock()
        self.leases = 0  # DynamoDB calls made (for tests and benchmarks)
        # Callers holding a token, waiting for its slot: still counted in their runs' wanted().
        self._sleeping = 0

    def acquire(self, timeout: float | None = None,
                wanted: Callable[[], int] | None = None) -> float | None:
        """Wait for a send slot on the account's schedule and return its time; ``None`` if
        none comes within ``timeout`` seconds. ``wanted()``, the slots the caller's run
        still needs (this one included), read when a lease is made, caps it, less the
        tokens callers hold while they wait for their slots: tokens leased past a run's
        last send go stale unused before the instance's next run starts (a chunk's end,
        every few seconds per instance)."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            with self._lock:  # the clock read inside: a thread never takes a past second
                now = self._clock()
                second = int(now)
                taken = (None if now < self._fallback_until
                         else self._take(second, now, wanted))
                if taken is not None and taken[1] >= 0:
                    self._sleeping += 1
            if taken is None:
                return self._local_share().acquire(timeout=self._left(deadline))
            if taken[1] < 0:  # the next second is used up too, by this instance or others
                wait = second + 1 - now
            else:
                slot = self._slot(*taken)
                try:
                    if deadline is not None and slot > deadline:
                        return None
                    # Taken at most LATE_SECONDS after its slot; waking up late from here on
                    # is jitter, as between any grant and SES (GUARD), never a reason to
                    # drop it: a CPU-starved instance would forfeit every token.
                    self._sleep(max(0.0, slot - self._clock()))
                finally:
                    with self._lock:
                        self._sleeping -= 1
                return slot
            if deadline is not None and now + wait > deadline:
                return None
            self._sleep(max(0.0, wait))

    def _local_share(self) -> RateLimiter:
        """The limiter used while DynamoDB fails, made on first need."""
        with self._share_lock:
            return self._fallback or self._make_local_share()

    def _make_local_share(self) -> RateLimiter:
        share = self._fallback_rate
        if callable(share):
            try:
                share = share()
            except PostbagError as exc:
                logger.error("cannot learn this instance's share; assuming the most instances",
                             extra={"error": str(exc)})
                share = self.rate / UNKNOWN_INSTANCES
        self._fallback = RateLimiter(min(share, self.rate), clock=self._clock, sleep=self._sleep)
        return self._fallback

    def _slot(self, second: int, token: int) -> float:
        return second + token * self._interval

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._clock())

    def _fresh(self, second: int, now: float) -> None:
        """Drop the tokens in hand whose slots are too long past (lock held)."""
        first = math.ceil((now - LATE_SECONDS - second) / self._interval)
        if self._tokens and self._tokens[0] < first:
            self._tokens = range(max(first, self._tokens.start), self._tokens.stop)

    def _take(self, second: int, now: float, wanted: Callable[[], int] | None
              ) -> tuple[int, int] | None:
        """A token of ``second``, or of the next once ``second`` is used up, as (its second,
        token) (lock held); token -1 when both are used up, ``None`` when DynamoDB failed
        (the caller falls back)."""
        if self._second < second:
            self._second, self._seen, self._used_up = second, 0, False
            self._tokens = range(0)
        self._fresh(self._second, now)
        cover = 0.0  # how long the last lease here took: the next one covers that much more
        while not self._tokens:
            if self._used_up:  # asked once: the rest of the second waits
                if self._second > second:
                    return self._second, -1
                self._second, self._seen, self._used_up = second + 1, 0, False
            asked = self._clock()
            try:
                leased = self._lease(self._second, asked, wanted, cover)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("rate lease failed; using the local share",
                               extra={"error": str(exc), "seconds": FALLBACK_SECONDS})
                self._fallback_until = self._clock() + FALLBACK_SECONDS
                return None
            answered = self._clock()
            cover = answered - asked
            self._tokens = leased
            self._fresh(self._second, answered)  # the lease may have taken a while
            # Used up only when DynamoDB has no more: a lease cut to what is wanted, from a
            # schedule behind the clock, can go stale while it is asked for; the next one
            # then covers the slots that pass meanwhile.
            self._used_up = not leased
        token, self._tokens = self._tokens[0], self._tokens[1:]
        return self._second, token

    def _lease(self, second: int, now: float, wanted: Callable[[], int] | None,
               cover: float = 0.0) -> range:
        """Token numbers leased for ``second``: ``lease_size`` of them (fewer if fewer are
        ``wanted``, plus the slots ``cover`` seconds hold) after those whose slots have
        passed (asked for too, to be forfeit), what is left, or none."""
        if wanted is None:
            size = self.lease_size
        else:
            size = min(self.lease_size, max(1, wanted() - self._sleeping)
                       + math.ceil(cover / self._interval))
        behind = math.floor((now - LATE_SECONDS - second) / self._interval) + 1
        want = min(self.per_second, max(0, behind - self._seen) + size)
        for _ in range(2):  # the lease, then what the condition's answer says is left
            self.leases += 1
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key={KEY_ATTRIBUTE: {"S": f"{self._namespace}#rate#{second}"}},
                    UpdateExpression="ADD #used :n SET #expiry = :expiry",
                    ConditionExpression="attribute_not_exists(#used) OR #used <= :room",
                    ExpressionAttributeNames={"#used": "used", "#expiry": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={
                        ":n": {"N": str(want)},
                        ":room": {"N": str(self.per_second - want)},
                        ":expiry": {"N": str(second + LEASE_TTL_SECONDS)},
                    },
                    ReturnValues="UPDATED_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                self._seen = int(answer["Attributes"]["used"]["N"])
                return range(self._seen - want, self._seen)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                used = int(exc.response.get("Item", {}).get("used", {}).get("N", self.per_second))
                self._seen = used
                want = self.per_second - used
                if want <= 0:
                    break
        return range(0)
