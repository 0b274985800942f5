"""The account's rate shared through DynamoDB (moto), on a simulated clock: never above it,
whatever number of instances ask, and reached by one instance or many."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import LEDGER_TABLE
from support.clock import FakeClock, busiest_second
from support.sending import DynamoDown, SerialClient, leased_tokens

from chalicelib.errors import ConfigurationError
from chalicelib.ratelimit import (
    FALLBACK_SECONDS,
    LATE_SECONDS,
    UNKNOWN_INSTANCES,
    SharedRateLimiter,
)

TABLE, NAMESPACE = LEDGER_TABLE, "postbag-test"


def limiter(client, clock: FakeClock, rate: float, fallback: float = 1.0, lease=None):
    return SharedRateLimiter(client, TABLE, NAMESPACE, rate, fallback, clock=clock,
                             sleep=clock.sleep, lease=lease)


def test_one_instance_reaches_the_rate_with_a_lease_per_few_mails(dynamodb):
    clock = FakeClock()
    shared = limiter(dynamodb, clock, 100)
    grants = [shared.acquire() for _ in range(600)]
    assert busiest_second(grants) <= 100
    achieved = (len(grants) - 1) / (grants[-1] - grants[0])
    assert 100 * 0.95 <= achieved <= 100
    # Leases of a few tokens: a fraction of the calls a token each would take.
    assert shared.leases <= len(grants) / shared.lease_size + 2 * 8


@pytest.mark.parametrize("instances", [2, 4], ids=lambda n: f"{n}-instances")
def test_instances_at_once_never_exceed_the_rate_and_reach_it(dynamodb, instances):
    """Real time and threads: each instance's workers take tokens ahead and wait for
    their slots, as the dispatcher's pool does."""
    rate, seconds = 40, 3.0
    client = SerialClient(dynamodb)
    grants: list[float] = []
    lock = threading.Lock()
    start = time.time()

    def worker(shared: SharedRateLimiter) -> None:
        while time.time() < start + seconds:
            granted = shared.acquire(timeout=1.0)
            if granted is not None:
                with lock:
                    grants.append(granted)

    limiters = [SharedRateLimiter(client, TABLE, NAMESPACE, rate, 1.0) for _ in range(instances)]
    threads = [threading.Thread(target=worker, args=(shared,))
               for shared in limiters for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The slots: when each send was let go, give or take the threads' waking up (which a
    # machine this loaded stretches well past what GUARD allows on a Lambda).
    assert busiest_second(grants) <= rate
    assert len(set(grants)) == len(grants)  # no slot granted twice
    assert len(grants) >= rate * seconds * 0.8


def test_the_last_tokens_of_a_second_are_leased_as_they_are(dynamodb):
    clock = FakeClock(start=1000.0)
    first, second = limiter(dynamodb, clock, 10, lease=4), limiter(dynamodb, clock, 10, lease=4)
    assert first.per_second == 9  # slots 1.02 / 10 s apart: lateness and jitter cannot add up
    # 4 leased, then what is left of the second: the second instance grants the other five.
    grants = [first.acquire() for _ in range(4)] + [second.acquire() for _ in range(5)]
    assert all(int(g) == 1000 for g in grants)
    assert int(first.acquire()) == 1001  # the second used up: the next one


def test_without_dynamodb_an_instance_falls_back_to_its_share_then_comes_back(dynamodb):
    clock = FakeClock()
    down = DynamoDown(dynamodb)
    shared = limiter(down, clock, 100, fallback=10)
    grants = [shared.acquire() for _ in range(50)]
    assert busiest_second(grants) <= 10
    down._failing = set()  # DynamoDB is back; asked again once the fallback time is over
    clock.sleep(FALLBACK_SECONDS)
    leases = shared.leases
    later = [shared.acquire() for _ in range(300)]
    assert shared.leases > leases
    assert busiest_second(later) <= 100 and later[-1] - later[0] < 4.0


def test_a_timeout_shorter_than_the_wait_for_the_next_second_gives_no_slot(dynamodb):
    clock = FakeClock(start=1000.0)
    shared = limiter(dynamodb, clock, 5, lease=5)
    assert all(shared.acquire(timeout=0.5) is not None for _ in range(5))
    assert shared.acquire(timeout=0.01) is None


def test_tokens_whose_lease_answered_after_their_second_are_not_used(dynamodb):
    clock = FakeClock(start=1000.5)

    class SlowOnce:
        """The first lease's answer takes 1.2 s: its tokens are for a second now over."""

        slow = True

        def update_item(self, **params):
            answer = dynamodb.update_item(**params)
            if SlowOnce.slow:
                SlowOnce.slow = False
                clock.sleep(1.2)
            return answer

    shared = limiter(SlowOnce(), clock, 10, lease=5)
    # A token of second 1001 whose slot is at most LATE_SECONDS before the call came back.
    assert shared.acquire() >= 1001.7 - LATE_SECONDS


def test_a_slow_lease_loses_no_slot_at_the_turn_of_a_second(dynamodb):
    """Each UpdateItem takes 30 ms: the next second's tokens, leased once this one's are
    used up, are in hand before their slots, so every slot of every second is granted."""
    clock = FakeClock(start=999.0)

    class Slow:
        def update_item(self, **params):
            clock.sleep(0.03)
            return dynamodb.update_item(**params)

    shared = limiter(Slow(), clock, 10, lease=9)  # one lease a second: no lease mid-second
    grants = [shared.acquire()]  # the first lease, from idle, is late for the first slot
    while grants[-1] < 1003:
        grants.append(shared.acquire())
        assert clock() >= grants[-1]  # never before its slot
    schedule = [second + token * 1.02 / 10 for second in (1000, 1001, 1002) for token in range(9)]
    assert [g for g in grants if 1000 <= g < 1003] == pytest.approx(schedule)
    assert busiest_second(grants) <= 9


def test_a_huge_rate_costs_no_more_per_slot(dynamodb):
    """A stand-in's quota of a million a second: a lease of 50,000 tokens is a range, never
    a list, and catching up after idle time drops tokens without counting them out."""
    clock = FakeClock()
    shared = limiter(dynamodb, clock, 1_000_000)
    started = time.process_time()
    grants = [shared.acquire() for _ in range(2000)]
    clock.sleep(0.5)
    grants += [shared.acquire() for _ in range(2000)]
    assert time.process_time() - started < 2.0
    assert shared.leases <= 4


def test_the_local_share_is_asked_for_only_when_dynamodb_fails(dynamodb):
    asked = []
    clock = FakeClock()
    down = DynamoDown(dynamodb)
    down._failing = set()
    shared = limiter(down, clock, 100, fallback=lambda: asked.append(1) or 10.0)
    [shared.acquire() for _ in range(50)]
    assert asked == []  # a cold start with DynamoDB answering makes no Lambda call
    down._failing = None  # every call fails from here
    grants = [shared.acquire() for _ in range(50)]
    assert asked == [1] and busiest_second(grants) <= 10


def test_a_share_that_cannot_be_learnt_is_the_smallest(dynamodb):
    def unknown() -> float:
        raise ConfigurationError("cannot read the reserved concurrency of postbag-x")

    clock = FakeClock()
    shared = limiter(DynamoDown(dynamodb), clock, 1000, fallback=unknown)
    grants = [shared.acquire() for _ in range(3)]
    assert grants[2] - grants[0] >= 2 * UNKNOWN_INSTANCES / 1000 * 0.99  # one a second


def test_a_lease_takes_no_more_tokens_than_the_run_still_wants(dynamodb):
    """Three sends left in the run, leases of 25: three tokens leased, not 25 of which 22
    would go stale while the instance starts its next run, lost to every instance."""
    clock = FakeClock(start=1000.0)
    shared = limiter(dynamodb, clock, 100, lease=25)
    grants = [shared.acquire(wanted=lambda left=left: left) for left in (3, 2, 1)]
    assert len(set(grants)) == 3
    assert (shared.leases, leased_tokens(dynamodb, TABLE)) == (1, 3)


def test_without_a_hint_a_lease_is_the_whole_lease(dynamodb):
    clock = FakeClock(start=1000.0)
    shared = limiter(dynamodb, clock, 100, lease=25)
    shared.acquire()
    assert leased_tokens(dynamodb, TABLE) == 25


def test_tokens_callers_wait_with_count_as_given_to_the_run(dynamodb):
    """Five sends left, five callers holding tokens and waiting for their slots: a sixth
    call (a retry) leases one token, not five more that would go stale."""
    release = threading.Event()
    # The clock stands at the second's start (no slot passed yet); each caller waits for
    # its slot until released.
    shared = SharedRateLimiter(dynamodb, TABLE, NAMESPACE, 100, 1.0, lease=25,
                               clock=FakeClock(start=1000.0), sleep=lambda _: release.wait(10))
    left = 5  # the run's sends whose acquire has not returned yet
    callers = [threading.Thread(target=shared.acquire, kwargs={"wanted": lambda: left})
               for _ in range(5)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 10
    while shared._sleeping < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Asked while the five still wait: it leases, and gives up its slot at once.
    assert shared.acquire(timeout=0, wanted=lambda: left) is None
    release.set()
    for caller in callers:
        caller.join(timeout=10)
    assert leased_tokens(dynamodb, TABLE) == 6


def test_a_small_lease_covers_the_slots_that_pass_while_it_is_asked_for(dynamodb):
    """One send wanted, leases taking 20 ms at 100 a second (slots 10.2 ms apart): the
    token leased for it is still fresh when the answer comes, so the send goes now, not
    in the next second."""
    clock = FakeClock(start=1000.3)

    class Slow:
        def update_item(self, **params):
            clock.sleep(0.02)
            return dynamodb.update_item(**params)

    shared = limiter(Slow(), clock, 100, lease=25)
    for _ in range(5):
        asked = clock()
        granted = shared.acquire(wanted=lambda: 1)
        # The lease (or two, while the first teaches it how long they take) and a slot.
        assert granted - asked < 0.1, (asked, granted)
        clock.sleep(0.2)  # idle between one-mail runs: the schedule falls behind the clock
