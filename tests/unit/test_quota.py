"""The 24-hour quota watch: when a chunk fits, and how rarely SES is asked."""

from __future__ import annotations

import pytest
from support.clock import FakeClock
from support.fakes import FakeSes, client_error

from chalicelib.quota import QuotaWatch


class CountingSes(FakeSes):
    """Counts ``GetSendQuota`` calls (SES allows one non-send call a second per account)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.quota_calls = 0
        self.quota_down = False

    def get_send_quota(self):
        self.quota_calls += 1
        if self.quota_down:
            raise client_error("ServiceUnavailable", "try later", "GetSendQuota", 503)
        return super().get_send_quota()


def sent(ses: FakeSes, count: int) -> None:
    for n in range(count):
        ses.send_email(Destination={"ToAddresses": [f"x{n}@example.net"]},
                       Message={"Subject": {"Data": "s"}})


@pytest.mark.parametrize(("limit", "already", "chunk", "fits"), [
    (100, 0, 100, True),
    (100, 1, 100, False),
    (100, 90, 10, True),
    (100, 95, 10, False),
    (100, 100, 1, False),
    (200, 150, 500, True),  # a chunk larger than the whole quota goes while there is room
    (200, 200, 500, False),
], ids=["exactly-fits", "one-over", "fills-it", "over", "used-up", "sandbox-room",
        "sandbox-used-up"])
def test_a_chunk_fits_when_the_quota_has_room_for_it(limit, already, chunk, fits):
    ses = CountingSes(daily_quota=limit)
    sent(ses, already)
    assert QuotaWatch(ses, clock=FakeClock()).allows(chunk) is fits


def test_sends_are_counted_between_readings_and_ses_is_asked_once_a_minute():
    clock, ses = FakeClock(), CountingSes(daily_quota=10)
    watch = QuotaWatch(ses, clock=clock)
    assert watch.allows(6)
    watch.sent(6)
    sent(ses, 6)
    assert not watch.allows(6) and watch.allows(4)
    assert ses.quota_calls == 1
    clock.sleep(61)
    assert watch.allows(4) and ses.quota_calls == 2


def test_ses_saying_the_quota_is_used_up_holds_chunks_until_the_next_reading():
    clock, ses = FakeClock(), CountingSes(daily_quota=1000)
    watch = QuotaWatch(ses, clock=clock)
    assert watch.allows(1)
    watch.exhausted()
    assert not watch.allows(1)
    clock.sleep(61)
    assert watch.allows(1)


def test_a_quota_that_cannot_be_read_lets_chunks_go_and_is_not_asked_at_every_chunk():
    clock, ses = FakeClock(), CountingSes()
    ses.quota_down = True
    watch = QuotaWatch(ses, clock=clock)
    assert all(watch.allows(500) for _ in range(5))
    assert ses.quota_calls == 1
