"""The account's rate shared through DynamoDB (moto), on a simulated clock: never above it,
whatever number of instances ask, and reached by one instance or many."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from support.clock import FakeClock, busiest_second
from support.sending import DynamoDown

from chalicelib.ledger import create_table
from chalicelib.ratelimit import FALLBACK_SECONDS, SharedRateLimiter

TABLE, NAMESPACE = "postbag-ledger", "postbag-test"


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


def limiter(client, clock: FakeClock, rate: float, fallback: float = 1.0, lease=None):
    return SharedRateLimiter(client, TABLE, NAMESPACE, rate, fallback, clock=clock,
                             sleep=clock.sleep, lease=lease)


def take(limiters, count: int) -> list[float]:
    """``count`` slots, asked of the instances in turn (one thread: the clock is shared)."""
    return [limiters[n % len(limiters)].acquire() for n in range(count)]


@pytest.mark.parametrize("instances", [1, 2, 5], ids=lambda n: f"{n}-instances")
def test_instances_together_never_exceed_the_rate_and_reach_it(dynamodb, instances):
    clock = FakeClock()
    rate = 100
    limiters = [limiter(dynamodb, clock, rate) for _ in range(instances)]
    grants = take(limiters, rate * 6)
    assert busiest_second(grants) <= rate
    achieved = (len(grants) - 1) / (grants[-1] - grants[0])
    assert rate * 0.85 <= achieved <= rate
    # Leases of a few tokens: a fraction of the calls a token each would take.
    leases = sum(x.leases for x in limiters)
    assert leases <= len(grants) / limiters[0].lease_size + 2 * instances * 7


def test_the_last_tokens_of_a_second_are_leased_as_they_are(dynamodb):
    clock = FakeClock(start=1000.0)
    first, second = limiter(dynamodb, clock, 10, lease=4), limiter(dynamodb, clock, 10, lease=4)
    # 4 + 4 leased, then 2 left of the 4 asked: the second still grants all ten.
    grants = [first.acquire() for _ in range(4)] + [second.acquire() for _ in range(6)]
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
