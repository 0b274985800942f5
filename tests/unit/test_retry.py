"""Retry policy: which errors are retried, how often, and how long it waits (no real sleeping)."""

from __future__ import annotations

import pytest

from chalicelib.errors import (
    RejectedBySes,
    SendingPaused,
    SesUnavailable,
    StorageUnavailable,
    Throttled,
)
from chalicelib.retry import RetryPolicy


class Flaky:
    """Raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(**kwargs) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []
    kwargs.setdefault("random", lambda: 1.0)
    return RetryPolicy(sleep=slept.append, **kwargs), slept


@pytest.mark.parametrize(
    "error",
    [Throttled("slow down"), SesUnavailable("503"), StorageUnavailable("s3 500")],
    ids=["throttled", "ses-unavailable", "storage-unavailable"],
)
def test_retryable_errors_are_retried_until_success(error):
    retry, slept = policy(attempts=4)
    fn = Flaky(error, error)
    assert retry.call(fn) == "ok"
    assert fn.calls == 3
    assert len(slept) == 2


@pytest.mark.parametrize(
    "error",
    [RejectedBySes("MessageRejected"), SendingPaused("paused"), ValueError("bug")],
    ids=["permanent", "sending-paused", "not-ours"],
)
def test_other_errors_are_raised_at_once(error):
    retry, slept = policy(attempts=5)
    fn = Flaky(error)
    with pytest.raises(type(error)):
        retry.call(fn)
    assert fn.calls == 1
    assert slept == []


def test_attempts_are_bounded_and_the_last_error_is_raised():
    retry, slept = policy(attempts=3)
    last = Throttled("third")
    fn = Flaky(Throttled("first"), Throttled("second"), last, Throttled("never reached"))
    with pytest.raises(Throttled) as raised:
        retry.call(fn)
    assert raised.value is last
    assert fn.calls == 3
    assert len(slept) == 2


def test_backoff_is_exponential_and_capped():
    retry, slept = policy(attempts=7, base_delay=0.1, max_delay=1.0)
    with pytest.raises(Throttled):
        retry.call(Flaky(*[Throttled("x")] * 7))
    assert slept == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_draws_between_zero_and_the_cap():
    draws = iter([0.0, 0.5, 0.25])
    retry, slept = policy(attempts=4, base_delay=1.0, max_delay=10.0, random=lambda: next(draws))
    with pytest.raises(SesUnavailable):
        retry.call(Flaky(*[SesUnavailable("x")] * 4))
    assert slept == pytest.approx([0.0, 1.0, 1.0])  # 0*1, 0.5*2, 0.25*4


def test_on_retry_sees_each_error_before_its_wait():
    retry, slept = policy(attempts=3)
    seen = []
    errors = [Throttled("a"), SesUnavailable("b")]
    retry.call(Flaky(*errors), on_retry=lambda exc, n, delay: seen.append((exc, n, delay)))
    assert [(exc, n) for exc, n, _ in seen] == [(errors[0], 0), (errors[1], 1)]
    assert [delay for *_, delay in seen] == slept


def test_at_least_one_attempt():
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
