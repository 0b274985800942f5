"""Every mail exactly once, whatever fails: the whole path under injected faults.

S3 and DynamoDB are moto; SES is the fake (faults on demand); time is a
simulated clock. Each test plays Lambda's part: every object created under
``queue/`` is an event, an invocation that raises is retried (redelivered),
and each "instance" has its own ledger, limiter and pool, as real ones do.
Mails are told apart by their subject, which is their id.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable

import boto3
import pytest
from conftest import load_fixture
from moto import mock_aws
from support.clock import FakeClock
from support.fakes import FakeSes
from support.sending import Invocation, SerialClient, dispatcher, mail_ids

from chalicelib.config import ATTACHMENTS_PREFIX, QUEUE_PREFIX, Settings
from chalicelib.errors import TransientError
from chalicelib.ledger import Ledger, create_table
from chalicelib.outcome import Recorder
from chalicelib.pipeline import Stages, process_object
from chalicelib.redrive import redrive
from chalicelib.send import SesSender
from chalicelib.store import BatchStore

BUCKET = "postbag-test"
SETTINGS = Settings(allowed_senders=("example.org",), idempotency_namespace="postbag-test")


class World:
    """The shared outside: bucket, ledger table, SES and the clock."""

    def __init__(self, s3, ses: FakeSes, clock: FakeClock, settings: Settings = SETTINGS):
        self.s3, self.ses, self.clock, self.settings = s3, ses, clock, settings
        self.processed: set[str] = set()
        self.invocations = 0
        self.wall_clock = time.time
        self._published = 0
        self._publishing = threading.Lock()

    def publish_send_events(self) -> None:
        """What on_ses_event does with SES's Send events for the mails SES accepted since."""
        with self._publishing:
            events = self.ses.send_events()
            fresh, self._published = events[self._published:], len(events)
            if fresh:
                ledger = Ledger.from_settings(
                    self.settings, SerialClient(boto3.client("dynamodb"))
                )
                ledger.record_sent(fresh)

    def instance(self, rate: float = 1000.0, workers: int = 8, attempts: int = 5,
                 evidence_window: float = 0.0) -> Stages:
        """A fresh Lambda instance: its own clients, ledger, limiter and pool.

        Abandoned claims are taken over at their expiry unless a test gives the
        ledger an evidence window; SES's Send events reach the ledger only when a
        test publishes them (``publish_send_events``).
        """
        s3 = SerialClient(boto3.client("s3", region_name="us-east-1"))
        ledger = Ledger.from_settings(
            self.settings, dynamodb_client=SerialClient(boto3.client("dynamodb")),
            evidence_window=evidence_window, clock=self.wall_clock,
        )
        dispatch = dispatcher(ledger, self.clock, rate=rate, workers=workers, attempts=attempts)
        return Stages(self.settings, BatchStore(s3), SesSender(self.ses), dispatch,
                      Recorder(s3))

    def invoke(self, stages: Stages, key: str, remaining_ms: Callable[[], int] | None = None):
        """One invocation for one object; True when it finished, False when Lambda must retry."""
        self.invocations += 1
        remaining_ms = remaining_ms or Invocation(self.clock).get_remaining_time_in_millis
        try:
            process_object(stages, BUCKET, key, remaining_ms)
        except TransientError:
            return False
        self.processed.add(key)
        return True

    def queued(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=QUEUE_PREFIX)
        return sorted(
            o["Key"] for o in listing.get("Contents", [])
            if o["Key"].endswith(".json")
            and not o["Key"].startswith(ATTACHMENTS_PREFIX)
        )

    def drain(self, make_stages: Callable[[], Stages] | None = None, budget_s: float = 900.0,
              limit: int = 100) -> None:
        """Deliver every unprocessed queue object, retrying failures, until none is left."""
        make_stages = make_stages or self.instance
        for _ in range(limit):
            pending = [k for k in self.queued() if k not in self.processed]
            if not pending:
                return
            for key in pending:
                remaining = Invocation(self.clock, budget_s).get_remaining_time_in_millis
                self.invoke(make_stages(), key, remaining)
        raise AssertionError(f"queue not drained after {limit} rounds")

    def sent_counts(self) -> Counter:
        return Counter(self.ses.subjects())

    def receipt(self, name: str) -> dict:
        body = self.s3.get_object(Bucket=BUCKET, Key=f"receipts/{name}.json")["Body"].read()
        return json.loads(body)


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_table(boto3.client("dynamodb", region_name="us-east-1"), SETTINGS.ledger_table)
        yield s3


def batch_document(batch_id: str, ids: list[str]) -> dict:
    doc = load_fixture("batches/plain.json")
    template = doc["emails"][0]
    doc["batch_id"] = batch_id
    doc["meta"]["bcc"] = []
    doc["emails"] = [
        {**template, "id": mail_id, "subject": mail_id, "to": [f"{mail_id}@example.net"]}
        for mail_id in ids
    ]
    return doc


def upload(s3, key: str, doc: dict) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
    return key


def assert_each_once(world: World, ids: list[str]) -> None:
    counts = world.sent_counts()
    assert sorted(counts) == sorted(ids), "lost or unexpected mails"
    assert [m for m, n in counts.items() if n > 1] == [], "duplicates"


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

    class Publishing(SesSender):
        """SES's events arrive while the sender waits: published after each send."""

        def _call(self, method, **params):
            try:
                return super()._call(method, **params)
            finally:
                world.publish_send_events()

    stages = world.instance(evidence_window=60.0)
    stages = Stages(stages.settings, stages.store, Publishing(ses), stages.dispatcher,
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
