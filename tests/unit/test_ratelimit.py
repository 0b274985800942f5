"""Rate limiter and the default-rate rule, on a simulated clock."""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.stub import Stubber
from support.clock import FakeClock, busiest_second
from support.fakes import FakeSes, client_error

from chalicelib.config import Settings
from chalicelib.errors import ConfigurationError, Throttled
from chalicelib.ratelimit import RateLimiter, account_rate, instance_share, reserved_concurrency


def limiter(rate: float, clock: FakeClock) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize("rate", [1, 14, 100, 500], ids=lambda r: f"{r}/s")
def test_one_thread_never_exceeds_the_rate_and_reaches_it(rate):
    clock = FakeClock()
    limit = limiter(rate, clock)
    grants = [limit.acquire() for _ in range(rate * 6)]
    assert grants[-1] - grants[0] >= 5.0
    assert busiest_second(grants) <= rate
    achieved = (len(grants) - 1) / (grants[-1] - grants[0])
    assert rate * 0.95 <= achieved <= rate


def test_many_threads_never_exceed_the_rate():
    clock = FakeClock()
    limit = limiter(14, clock)
    grants: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(20):
            granted = limit.acquire()
            with lock:
                grants.append(granted)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(grants) == 160
    assert max(grants) - min(grants) >= 5.0
    assert busiest_second(grants) <= 14
    assert len(set(grants)) == len(grants)  # no two threads got the same slot


def test_sends_through_the_limiter_reach_fake_ses_within_the_rate():
    clock = FakeClock()
    ses = FakeSes(clock=clock, sleep=clock.sleep, latency=0.01)
    limit = limiter(10, clock)
    for n in range(60):
        limit.acquire()
        ses.send_email(Source="a@example.org", Destination={"ToAddresses": ["b@example.net"]},
                       Message={"Subject": {"Data": f"mail {n}"}, "Body": {}})
    times = ses.times()
    assert len(times) == 60 and times[-1] - times[0] >= 5.0
    assert busiest_second(times) <= 10


@pytest.mark.parametrize(
    ("rate", "per_second"), [(0.5, 1), (2.5, 2), (1.0, 1)], ids=["half", "two-and-a-half", "one"]
)
def test_fractional_rates_round_down_per_window(rate, per_second):
    clock = FakeClock()
    limit = limiter(rate, clock)
    grants = [limit.acquire() for _ in range(12)]
    assert busiest_second(grants) <= per_second
    if rate < 1:
        assert min(b - a for a, b in zip(grants, grants[1:], strict=False)) >= 1 / rate - 1e-9


def test_a_slot_beyond_the_timeout_is_refused_and_left_for_others():
    clock = FakeClock()
    limit = RateLimiter(2, clock=clock, sleep=clock.sleep, guard=0.0)
    first = limit.acquire()
    assert limit.acquire(timeout=0.1) is None  # the next slot is 0.5 s away
    assert clock.now == first  # refusing did not wait
    assert limit.acquire(timeout=0.5) == pytest.approx(first + 0.5)


def test_rate_must_be_positive():
    with pytest.raises(ValueError):
        RateLimiter(0)


class QuotaThrottled(FakeSes):
    def get_send_quota(self):
        raise client_error("Throttling", "Rate exceeded", "GetSendQuota")


def test_configured_rate_wins_without_asking_ses():
    ses = QuotaThrottled(max_send_rate=50)  # asking would raise
    assert account_rate(Settings(max_send_rate=7.0), ses) == 7.0


@pytest.mark.parametrize("configured", [0.0, 14.0], ids=["ses-rate", "configured-rate"])
@pytest.mark.parametrize(
    ("ses_rate", "concurrency", "expected"), [(14, 1, 14.0), (14, 2, 7.0), (14, 8, 1.75)]
)
def test_the_account_rate_is_shared_between_instances_whatever_its_source(
        configured, ses_rate, concurrency, expected):
    ses = FakeSes(max_send_rate=ses_rate)
    settings = Settings(max_send_rate=configured)
    assert account_rate(settings, ses) == 14.0
    share = instance_share(account_rate(settings, ses), lambda: concurrency)
    assert share == expected and share * concurrency <= account_rate(settings, ses)


def test_quota_lookup_errors_are_translated():
    with pytest.raises(Throttled):
        account_rate(Settings(max_send_rate=0.0), QuotaThrottled())


def lambda_stub(response=None, error_code=None):
    client = boto3.client("lambda", region_name="us-east-1")
    stub = Stubber(client)
    expected = {"FunctionName": "postbag-prod-on_batch_uploaded"}
    if error_code:
        stub.add_client_error("get_function_concurrency", error_code, expected_params=expected)
    else:
        stub.add_response("get_function_concurrency", response, expected)
    stub.activate()
    return client


def test_the_concurrency_is_what_lambda_reserved_for_the_function():
    client = lambda_stub({"ReservedConcurrentExecutions": 5})
    assert reserved_concurrency(client, "postbag-prod-on_batch_uploaded") == 5


@pytest.mark.parametrize(
    ("response", "error_code", "words"),
    [({}, None, "has no reserved concurrency"),
     (None, "AccessDeniedException", "cannot read the reserved concurrency")],
    ids=["none-reserved", "not-allowed"],
)
def test_a_function_without_a_known_concurrency_is_refused_loudly(response, error_code, words):
    client = lambda_stub(response, error_code)
    with pytest.raises(ConfigurationError, match=words):
        reserved_concurrency(client, "postbag-prod-on_batch_uploaded")
