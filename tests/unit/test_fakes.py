"""The fake SES raises what botocore raises, so the sender's translation sees real shapes."""

from __future__ import annotations

import pytest
from support.clock import FakeClock
from support.fakes import FakeSes
from support.sending import META

from chalicelib.errors import RejectedBySes, SendingPaused, SesUnavailable, Throttled
from chalicelib.model import Mail
from chalicelib.send import SesSender

MAIL = Mail(id="m1", to=(("", "zoe@example.net"),), subject="Hello", text="hi")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"paused": True}, SendingPaused),
        ({"daily_quota": 0}, SendingPaused),
        ({"throttle_share": 1.0}, Throttled),
        ({"reject": ["zoe@example.net"]}, RejectedBySes),
        ({"fail_after": 0}, SesUnavailable),
    ],
    ids=["paused", "daily-quota", "throttled", "rejected", "unreachable"],
)
def test_faults_translate_to_postbag_errors(fault, error):
    ses = FakeSes(**fault)
    with pytest.raises(error):
        SesSender(ses).send_simple(MAIL, META)
    assert ses.accepted == []


def test_accepted_mail_is_recorded_with_its_arrival_time():
    clock = FakeClock()
    ses = FakeSes(clock=clock, sleep=clock.sleep, latency=0.05)
    first = SesSender(ses).send_simple(MAIL, META)
    second = SesSender(ses).send_raw(MAIL, META, b"Subject: Raw\r\nTo: zoe@example.net\r\n\r\nhi")
    assert [a.message_id for a in ses.accepted] == [first, second]
    assert [a.subject for a in ses.accepted] == ["Hello", "Raw"]
    assert ses.times() == pytest.approx([1000.0, 1000.05])
    assert ses.accepted[1].recipients == ("zoe@example.net",)


def test_throttling_draws_are_seeded():
    def throttled(seed):
        ses = FakeSes(throttle_share=0.3, seed=seed)
        outcomes = []
        for _ in range(50):
            try:
                SesSender(ses).send_simple(MAIL, META)
                outcomes.append(False)
            except Throttled:
                outcomes.append(True)
        return outcomes

    assert throttled(1) == throttled(1)
    assert 5 <= sum(throttled(1)) <= 25
