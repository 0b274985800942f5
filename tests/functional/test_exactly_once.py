"""Every mail exactly once, whatever fails: the whole path under injected faults.

S3 and DynamoDB are moto; SES is the fake (faults on demand); time is a
simulated clock. Each test plays Lambda's part: every object created under
``queue/`` is an event, an invocation that raises is retried (redelivered),
and each "instance" has its own ledger, limiter and pool, as real ones do.
Mails are told apart by their subject, which is their id.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import boto3
import pytest
from moto import mock_aws
from support.fakes import FakeSes
from support.sending import PublishingSender, mail_ids
from support.world import BUCKET, SETTINGS, World, assert_each_once, batch_document, upload

from chalicelib.config import Settings
from chalicelib.ledger import create_table
from chalicelib.pipeline import Stages
from chalicelib.redrive import redrive
from chalicelib.send import SesSender


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_table(boto3.client("dynamodb", region_name="us-east-1"), SETTINGS.ledger_table)
        yield s3


def test_500_mails_ses_fails_hard_after_200_then_the_same_event_again(aws, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, fail_after=200)
    world = World(aws, ses, clock)
    ids = mail_ids(500)
    key = upload(aws, "queue/b500.json", batch_document("b500", ids))
    assert world.invoke(world.instance(workers=1), key) is False  # Lambda will retry
    assert len(ses.accepted) == 200
    ses.fail_after = None  # the same event, delivered again, to a healthy SES
    assert world.invoke(world.instance(), key) is True
    assert len(ses.accepted) == 500
    assert_each_once(world, ids)
    assert world.receipt("b500")["counts"] == {"duplicate": 200, "sent": 300}


class Crash(BaseException):
    """The instance dies mid-send (timeout, out of memory): no release, no record."""


def test_an_instance_dying_mid_batch_is_taken_over_after_its_deadline(aws, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, fail_after=20, hard_failure=Crash)
    world = World(aws, ses, clock, Settings(**{**vars(SETTINGS), "deadline_margin_ms": 100}))
    ids = mail_ids(100)
    key = upload(aws, "queue/crash.json", batch_document("crash", ids))
    with pytest.raises(Crash):
        # Real milliseconds: the ledger times claims by the wall clock.
        world.invoke(world.instance(), key, remaining_ms=lambda: 1500)
    ses.fail_after = None
    assert world.invoke(world.instance(), key) is False  # claims still held: retry later
    assert 20 < len(ses.accepted) < 100
    time.sleep(1.55)  # past the dead instance's deadline
    assert world.invoke(world.instance(), key) is True
    assert_each_once(world, ids)


def test_the_same_event_handled_by_two_invocations_at_once(aws, clock):
    ses = FakeSes(latency=0.001)  # real time, so that the two really overlap
    world = World(aws, ses, clock)
    ids = mail_ids(120)
    key = upload(aws, "queue/twice.json", batch_document("twice", ids))
    results: list[bool] = []

    def invocation():
        results.append(world.invoke(world.instance(workers=4), key))

    threads = [threading.Thread(target=invocation) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert False in results  # they did overlap: one met the other's claims and asked for a retry
    while not world.invoke(world.instance(), key):  # Lambda's retry of one that saw claims held
        time.sleep(0.01)
    assert_each_once(world, ids)


def test_the_same_batch_uploaded_under_two_keys(aws, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    world = World(aws, ses, clock)
    ids = mail_ids(40)
    doc = batch_document("reup", ids)
    upload(aws, "queue/first-upload.json", doc)
    upload(aws, "queue/second-upload.json", doc)
    world.drain()
    assert_each_once(world, ids)
    assert world.processed == {"queue/first-upload.json", "queue/second-upload.json"}


def test_ses_throttling_a_random_30_percent_of_calls(aws, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, throttle_share=0.3, seed=30)
    world = World(aws, ses, clock)
    ids = mail_ids(200)
    upload(aws, "queue/throttled.json", batch_document("throttled", ids))
    world.drain(lambda: world.instance(attempts=8))
    assert ses.throttled >= 40
    assert_each_once(world, ids)


def test_a_batch_larger_than_one_invocation_completes_through_continuations(aws, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    world = World(aws, ses, clock)
    ids = mail_ids(200)
    upload(aws, "queue/big.json", batch_document("big", ids))
    # 20 mails/s with 2.5 s to spare before the 15 s margin: ~50 mails per invocation.
    world.drain(lambda: world.instance(rate=20), budget_s=17.5)
    assert_each_once(world, ids)
    parts = [k for k in world.processed if ".part-" in k]
    assert len(parts) >= 3
    assert sum(world.receipt(k.removeprefix("queue/").removesuffix(".json"))["counts"]
               .get("sent", 0) for k in world.processed) == 200


def test_one_of_50_rejected_then_redriven_after_the_fix(aws, clock):
    ids = mail_ids(50)
    ses = FakeSes(clock=clock, sleep=clock.sleep, reject=[f"{ids[17]}@example.net"])
    world = World(aws, ses, clock)
    upload(aws, "queue/fifty.json", batch_document("fifty", ids))
    world.drain()
    assert len(ses.accepted) == 49
    mails = {m["mail_id"]: m for m in world.receipt("fifty")["mails"]}
    assert Counter(m["status"] for m in mails.values()) == {"sent": 49, "failed": 1}
    assert "MessageRejected" in mails[ids[17]]["reason"]
    ses.reject.clear()  # the cause is fixed
    assert redrive(aws, BUCKET) == ["queue/fifty.redrive-1.json"]
    world.drain()
    world.processed.discard("queue/fifty.redrive-1.json")  # a replay of the re-driven file
    world.drain()
    world.processed.discard("queue/fifty.json")  # and of the original upload
    world.drain()
    assert_each_once(world, ids)
    assert world.sent_counts()[ids[17]] == 1


def test_lost_answers_are_settled_by_ses_send_events_never_resent_blind(aws, clock):
    """A read timeout after SES took the mail: the claim is kept, the Send event settles it."""
    ses = FakeSes(clock=clock, sleep=clock.sleep, lose_answer_share=0.1, seed=5)
    world = World(aws, ses, clock)
    ids = mail_ids(500)
    key = upload(aws, "queue/lost.json", batch_document("lost", ids))
    world.wall_clock = clock  # the evidence window passes in simulated time

    stages = world.instance(evidence_window=60.0)
    sender = PublishingSender(ses, publish=world.publish_send_events)
    stages = Stages(stages.settings, stages.store, sender, stages.dispatcher,
                    stages.recorder)
    assert world.invoke(stages, key) is True
    assert ses.lost_answers > 20
    assert_each_once(world, ids)
    receipt = {m["mail_id"]: m for m in world.receipt("lost")["mails"]}
    by_subject = {a.subject: a.message_id for a in ses.accepted}
    assert all(receipt[i]["status"] == "sent" for i in ids)
    assert all(receipt[i]["message_id"] == by_subject[i] for i in ids)


def test_a_lost_answer_with_no_send_event_is_resent_after_the_window(aws, clock):
    """No Send event came (SES did not take it after all): sent once more, after the window."""
    ses = FakeSes(clock=clock, sleep=clock.sleep)
    world = World(aws, ses, clock)
    world.wall_clock = clock
    ids = mail_ids(3)
    key = upload(aws, "queue/nothing.json", batch_document("nothing", ids))

    class AnswerLostBeforeSes(SesSender):
        """The first call times out before reaching SES: nothing accepted, no event."""

        calls = 0

        def _call(self, method, **params):
            AnswerLostBeforeSes.calls += 1
            if AnswerLostBeforeSes.calls == 1:
                from botocore.exceptions import ReadTimeoutError

                from chalicelib.send import translate

                raise translate(ReadTimeoutError(endpoint_url="https://ses"))
            return super()._call(method, **params)

    stages = world.instance(evidence_window=60.0)
    stages = Stages(stages.settings, stages.store, AnswerLostBeforeSes(ses), stages.dispatcher,
                    stages.recorder)
    started = clock()
    assert world.invoke(stages, key) is True
    assert clock() - started >= 60.0  # it waited out the window before sending again
    assert_each_once(world, ids)
