"""Held batches: kept until due (an injected clock), released by the drainer once, cancelled
and rescheduled with one winner, whatever replays, overlapping drainers and crashes do.

S3 and DynamoDB are moto, SES the fake, time a ``FakeClock`` the hold book, the drainer
and the dispatcher share. Each test plays Lambda's and EventBridge's part: it invokes
the upload's handler and runs the drainer at the times it chooses.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws
from support.clock import FakeClock
from support.fakes import FakeSes
from support.sending import Invocation, mail_ids
from support.world import BUCKET, SETTINGS, World, assert_each_once, batch_document, upload

from chalicelib.control import Control
from chalicelib.control_result import result_key
from chalicelib.drain import Drainer
from chalicelib.hold import BATCH, LEASE_SECONDS, MAX_RELEASE_FAILURES, Held, HoldBook, State
from chalicelib.ledger import create_table
from chalicelib.outcome import Recorder
from chalicelib.pipeline import release_held
from chalicelib.send import SesSender
from chalicelib.store import BatchStore

START = datetime(2026, 12, 1, 7, 0, tzinfo=UTC).timestamp()
DUE = "2026-12-01T08:00:00Z"
DUE_EPOCH = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_table(boto3.client("dynamodb", region_name="us-east-1"), SETTINGS.ledger_table)
        yield s3


class Scene:
    """A world whose batches may carry a time, and the drainer and requests that act on them."""

    def __init__(self, s3):
        self.s3 = s3
        self.clock = FakeClock(START)
        self.ses = FakeSes(clock=self.clock, sleep=self.clock.sleep)
        self.world = World(s3, self.ses, self.clock)
        self.book = HoldBook(boto3.client("dynamodb", region_name="us-east-1"),
                             SETTINGS.ledger_table, SETTINGS.idempotency_namespace, s3, BUCKET,
                             self.clock)

    def stages(self):
        return dataclasses.replace(self.world.instance(), hold=self.book)

    def release(self, held: Held) -> bool:
        return release_held(self.stages(), held,
                            Invocation(self.clock).get_remaining_time_in_millis)

    def drainer(self, **release) -> Drainer:
        return Drainer(self.book, {BATCH: release.get("batch", self.release)})

    def upload(self, batch_id: str, ids: list[str], send_at: str | None) -> str:
        doc = batch_document(batch_id, ids) | {"send_at": send_at}
        key = upload(self.s3, f"queue/{batch_id}.json", doc)
        assert self.world.invoke(self.stages(), key)
        return key

    def at(self, moment: float) -> None:
        self.clock.now = moment

    def request(self, key: str, body: dict | None = None) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body or {}).encode())
        control = Control(self.book, BatchStore(self.s3), Recorder(self.s3), SETTINGS,
                          rescheduled=lambda held: None, job_cancelled=lambda held: None)
        return control.apply(BUCKET, key)

    def markers(self) -> list[str]:
        found = self.s3.list_objects_v2(Bucket=BUCKET, Prefix="held/").get("Contents", [])
        return [entry["Key"] for entry in found]

    def receipt_counts(self, batch_id: str) -> dict:
        return self.world.receipt(batch_id)["counts"]

    def result(self, batch_id: str) -> dict:
        """What the sender told the site of the latest request (status/control/...)."""
        body = self.s3.get_object(Bucket=BUCKET, Key=result_key(BATCH, batch_id))["Body"]
        return json.loads(body.read())

    def uploaded_late(self, batch_id: str, ids: list[str], send_at: str) -> str:
        """A batch whose upload event comes after a request (Lambda retried it)."""
        key = upload(self.s3, f"queue/{batch_id}.json",
                     batch_document(batch_id, ids) | {"send_at": send_at})
        return key


def reschedule(send_at: str | None, requested_at: str = "2026-12-01T07:00:00Z") -> dict:
    return {"version": 1, "send_at": send_at, "send_between": None,
            "requested_at": requested_at}


@pytest.fixture
def scene(aws):
    return Scene(aws)


def test_a_batch_is_held_until_due_then_sent_once(scene):
    ids = mail_ids(5)
    scene.upload("b1", ids, DUE)
    assert scene.ses.subjects() == []
    assert scene.markers() == ["held/2026-12-01T08:00:00Z/batch/b1"]
    scene.at(DUE_EPOCH - 1)
    assert scene.drainer().run().released == []
    assert scene.ses.subjects() == []
    scene.at(DUE_EPOCH + 59)  # the next minute's run, at the latest
    assert scene.drainer().run().released == ["batch/b1"]
    assert_each_once(scene.world, ids)
    assert scene.markers() == []
    assert scene.book.get(BATCH, "b1").state is State.RELEASED
    scene.drainer().run()
    assert_each_once(scene.world, ids)


@pytest.mark.parametrize("send_at, due", [
    ("2026-12-01T09:00:00+01:00", "2026-12-01T08:00:00Z"),  # Paris in winter
    ("2026-12-01T03:00:00-05:00", "2026-12-01T08:00:00Z"),  # New York in winter
    ("2026-12-01T08:00:30.750Z", "2026-12-01T08:00:30Z"),  # to the second
    ("2027-02-28T23:30:00-01:00", "2027-03-01T00:30:00Z"),  # across a month
], ids=["plus-one-hour", "minus-five-hours", "fraction", "offset-crosses-midnight"])
def test_a_time_with_an_offset_is_held_until_that_instant_in_utc(scene, send_at, due):
    scene.upload("b1", ["m1"], send_at)
    assert scene.markers() == [f"held/{due}/batch/b1"]
    due_epoch = datetime.fromisoformat(due.replace("Z", "+00:00")).timestamp()
    scene.at(due_epoch - 1)
    scene.drainer().run()
    assert scene.ses.subjects() == []
    scene.at(due_epoch)
    scene.drainer().run()
    assert scene.ses.subjects() == ["m1"]


def test_a_summer_time_offset_is_one_hour_less_than_a_winter_one(scene):
    # Europe/Paris is +02:00 in June and +01:00 in December: the same wall-clock 09:00
    # from the site's time zone is two different UTC times (the plugin sends the offset).
    # Summer time begins on 28 March 2027.
    scene.at(datetime(2027, 3, 20, tzinfo=UTC).timestamp())
    scene.upload("winter", ["m1"], "2027-03-27T09:00:00+01:00")
    scene.upload("summer", ["m2"], "2027-03-29T09:00:00+02:00")
    assert sorted(scene.markers()) == ["held/2027-03-27T08:00:00Z/batch/winter",
                                       "held/2027-03-29T07:00:00Z/batch/summer"]


def test_a_time_in_the_past_sends_at_once(scene):
    scene.upload("b1", ["m1", "m2"], "2026-12-01T06:00:00Z")
    assert sorted(scene.ses.subjects()) == ["m1", "m2"]
    assert scene.markers() == []


def test_no_time_sends_at_once_and_holds_nothing(scene):
    scene.upload("b1", ["m1"], None)
    assert scene.ses.subjects() == ["m1"]
    assert scene.book.get(BATCH, "b1") is None


def test_a_time_more_than_90_days_ahead_is_quarantined_with_the_field(scene):
    key = upload(scene.s3, "queue/b1.json",
                 batch_document("b1", ["m1"]) | {"send_at": "2027-03-01T07:00:01Z"})
    assert scene.world.invoke(scene.stages(), key)
    stored = scene.s3.get_object(Bucket=BUCKET, Key="quarantine/b1.json.error.json")
    error = json.loads(stored["Body"].read())
    assert error["field"] == "send_at"
    assert "more than 90 days ahead" in error["reason"]
    assert scene.ses.subjects() == [] and scene.markers() == []


def test_exactly_90_days_ahead_is_held(scene):
    scene.upload("b1", ["m1"], "2027-03-01T07:00:00Z")
    assert scene.markers() == ["held/2027-03-01T07:00:00Z/batch/b1"]


def test_a_replayed_upload_event_holds_once_and_sends_once(scene):
    ids = mail_ids(3)
    key = scene.upload("b1", ids, DUE)
    for _ in range(3):
        assert scene.world.invoke(scene.stages(), key)
    assert scene.markers() == ["held/2026-12-01T08:00:00Z/batch/b1"]
    scene.at(DUE_EPOCH)
    scene.drainer().run()
    assert scene.world.invoke(scene.stages(), key)  # an event replayed after the release
    assert_each_once(scene.world, ids)


def test_two_drainers_at_once_release_an_item_once(scene):
    scene.upload("b1", ["m1"], DUE)
    scene.at(DUE_EPOCH)
    inner = []

    def release_while_another_runs(held: Held) -> bool:
        inner.append(scene.drainer().run())  # the second drainer lists the same marker
        return scene.release(held)

    report = scene.drainer(batch=release_while_another_runs).run()
    assert report.released == ["batch/b1"]
    assert inner[0].released == [] and inner[0].skipped == 1
    assert scene.ses.subjects() == ["m1"]


def test_a_drainer_that_crashes_after_its_claim_is_replaced_when_its_lease_ends(scene):
    ids = mail_ids(4)
    scene.upload("b1", ids, DUE)
    scene.at(DUE_EPOCH)
    [marker] = scene.book.due_markers()
    assert scene.book.claim(marker, "crashed-run") is not None  # ... and nothing after
    scene.drainer().run()
    assert scene.ses.subjects() == [], "its lease is alive: another run keeps off"
    scene.at(DUE_EPOCH + LEASE_SECONDS + 1)
    assert scene.drainer().run().released == ["batch/b1"]
    assert_each_once(scene.world, ids)


def test_a_crash_between_due_and_sent_sends_the_rest_once(scene):
    ids = mail_ids(6)
    scene.upload("b1", ids, DUE)
    scene.at(DUE_EPOCH)
    ses = FakeSes(clock=scene.clock, sleep=scene.clock.sleep, fail_after=3)

    def die_after_three_sends(held: Held) -> bool:
        stages = dataclasses.replace(scene.stages(), sender=SesSender(ses))
        release_held(stages, held, Invocation(scene.clock).get_remaining_time_in_millis)
        raise AssertionError("SES failing hard leaves mails unsettled: the batch raises")

    assert scene.drainer(batch=die_after_three_sends).run().paused == ["batch/b1"]
    assert scene.book.get(BATCH, "b1").state is State.RELEASING
    assert len(ses.accepted) == 3
    scene.at(DUE_EPOCH + 60)
    assert scene.drainer().run().released == ["batch/b1"]
    assert sorted(ses.subjects() + scene.ses.subjects()) == sorted(ids), "each once"


def test_a_cancelled_held_batch_sends_nothing_and_is_recorded_cancelled(scene):
    scene.upload("b1", ["m1", "m2"], DUE)
    assert scene.request("control/batches/b1/cancel") == "cancelled"
    assert scene.receipt_counts("b1") == {"cancelled": 2}
    assert scene.markers() == []
    scene.at(DUE_EPOCH)
    scene.drainer().run()
    assert scene.ses.subjects() == []
    assert scene.request("control/batches/b1/cancel") == "cancelled"  # a replay: as it was


def test_a_cancel_after_the_release_is_too_late_and_changes_nothing(scene):
    scene.upload("b1", ["m1"], DUE)
    scene.at(DUE_EPOCH)
    scene.drainer().run()
    assert scene.request("control/batches/b1/cancel") == "too_late"
    assert scene.receipt_counts("b1") == {"sent": 1}


@pytest.mark.parametrize("new_time, before, after", [
    ("2026-12-01T09:00:00Z", DUE_EPOCH, DUE_EPOCH + 3600),
    ("2026-12-01T07:30:00Z", DUE_EPOCH - 1800 - 1, DUE_EPOCH - 1800),
    ("2026-12-01T06:00:00Z", START - 1, START),  # a time past: the next run
    (None, START - 1, START),  # null: now
], ids=["later", "earlier", "past", "now"])
def test_a_reschedule_moves_a_held_batch_and_it_goes_once(scene, new_time, before, after):
    scene.upload("b1", ["m1"], DUE)
    assert scene.request("control/batches/b1/schedule.json", reschedule(new_time)) \
        == "rescheduled"
    assert len(scene.markers()) == 1
    if before >= START:
        scene.at(before)
        scene.drainer().run()
        assert scene.ses.subjects() == []
    scene.at(after)
    scene.drainer().run()
    scene.at(DUE_EPOCH + 7200)
    scene.drainer().run()
    assert scene.ses.subjects() == ["m1"]


def test_a_reschedule_racing_a_release_has_one_winner_drainer_first(scene):
    scene.upload("b1", ["m1"], DUE)
    scene.at(DUE_EPOCH)

    def reschedule_meanwhile(held: Held) -> bool:
        assert scene.request("control/batches/b1/schedule.json",
                             reschedule("2026-12-02T08:00:00Z")) == "too_late"
        assert scene.request("control/batches/b1/cancel") == "too_late"
        return scene.release(held)

    assert scene.drainer(batch=reschedule_meanwhile).run().released == ["batch/b1"]
    assert scene.ses.subjects() == ["m1"]
    assert scene.book.get(BATCH, "b1").due == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_reschedule_racing_a_release_has_one_winner_reschedule_first(scene):
    scene.upload("b1", ["m1"], DUE)
    scene.at(DUE_EPOCH)
    [stale] = scene.book.due_markers()  # the drainer has listed the marker...
    assert scene.request("control/batches/b1/schedule.json",
                         reschedule("2026-12-02T08:00:00Z")) == "rescheduled"
    assert scene.book.claim(stale, "late-run") is None  # ...and its claim loses
    assert scene.ses.subjects() == []
    scene.at(DUE_EPOCH + 86400)
    scene.drainer().run()
    assert scene.ses.subjects() == ["m1"]


def test_a_cancel_racing_a_claim_loses_to_it_or_wins_whole(scene):
    scene.upload("b1", ["m1"], DUE)
    scene.at(DUE_EPOCH)
    [marker] = scene.book.due_markers()
    assert scene.request("control/batches/b1/cancel") == "cancelled"
    assert scene.book.claim(marker, "late-run") is None
    scene.drainer().run()
    assert scene.ses.subjects() == []
    assert scene.receipt_counts("b1") == {"cancelled": 1}


@pytest.mark.parametrize("body, field", [
    ({"version": 1, "send_at": "tomorrow", "send_between": None,
      "requested_at": "2026-12-01T07:00:00Z"}, "send_at"),
    ({"version": 1, "send_at": "2027-06-01T00:00:00Z", "send_between": None,
      "requested_at": "2026-12-01T07:00:00Z"}, "send_at"),
    ({"version": 1, "send_at": None, "requested_at": "2026-12-01T07:00:00Z"}, "(request)"),
    ({"version": 2, "send_at": None, "send_between": None,
      "requested_at": "2026-12-01T07:00:00Z"}, "version"),
], ids=["not-a-time", "too-far", "send-between-missing", "unknown-version"])
def test_a_bad_reschedule_request_is_quarantined_and_the_batch_stays_held(scene, body, field):
    scene.upload("b1", ["m1"], DUE)
    key = "control/batches/b1/schedule.json"
    assert scene.request(key, body) == "quarantined"
    error = json.loads(scene.s3.get_object(Bucket=BUCKET, Key=f"quarantine/{key}.error.json")
                       ["Body"].read())
    assert error["field"] == field
    assert scene.markers() == ["held/2026-12-01T08:00:00Z/batch/b1"]


def test_a_stale_marker_left_by_an_interrupted_reschedule_is_removed(scene):
    scene.upload("b1", ["m1"], DUE)
    # A reschedule that wrote its new marker and stopped before changing the item.
    scene.s3.put_object(Bucket=BUCKET, Key="held/2026-12-01T07:30:00Z/batch/b1", Body=b"")
    scene.at(DUE_EPOCH - 60)
    assert scene.drainer().run().skipped == 1
    assert scene.markers() == ["held/2026-12-01T08:00:00Z/batch/b1"]
    assert scene.ses.subjects() == []


def test_of_two_reschedules_the_one_asked_later_wins_whatever_their_order(scene):
    scene.upload("b1", ["m1"], DUE)
    key = "control/batches/b1/schedule.json"
    assert scene.request(key, reschedule("2026-12-01T10:00:00Z", "2026-12-01T07:05:00Z")) \
        == "rescheduled"
    # Asked at 07:01, its event came after the 07:05 one's.
    assert scene.request(key, reschedule("2026-12-01T09:00:00Z", "2026-12-01T07:01:00Z")) \
        == "superseded"
    assert scene.request(key, reschedule("2026-12-01T10:00:00Z", "2026-12-01T07:05:00Z")) \
        == "rescheduled", "a replayed request changes nothing"
    assert scene.markers() == ["held/2026-12-01T10:00:00Z/batch/b1"]


def cancel(requested_at: str) -> dict:
    return {"version": 1, "requested_at": requested_at}


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-first", "upload-first"])
def test_a_cancel_is_applied_whichever_comes_first_the_cancel_or_the_upload_event(
        scene, cancel_first):
    key = scene.uploaded_late("b1", ["m1", "m2"], DUE)
    request = "control/batches/b1/cancel"
    if cancel_first:
        assert scene.request(request, cancel("2026-12-01T07:00:00.250Z")) == "pending"
        assert "Contents" not in scene.s3.list_objects_v2(
            Bucket=BUCKET, Prefix="status/control/"), "nothing told before it is applied"
    assert scene.world.invoke(scene.stages(), key)
    if not cancel_first:
        assert scene.request(request, cancel("2026-12-01T07:00:00.250Z")) == "cancelled"
    assert scene.world.invoke(scene.stages(), key), "a replayed upload event"
    scene.at(DUE_EPOCH)
    scene.drainer().run()
    assert scene.ses.subjects() == []
    assert scene.receipt_counts("b1") == {"cancelled": 2}
    assert scene.markers() == []
    result = scene.result("b1")
    assert {k: result[k] for k in ("kind", "id", "request", "outcome", "send_at",
                                   "requested_at")} == {
        "kind": "batch", "id": "b1", "request": "cancel", "outcome": "cancelled",
        "send_at": None, "requested_at": "2026-12-01T07:00:00.250Z"}


@pytest.mark.parametrize("new_time, sent_at", [
    ("2026-12-01T09:00:00Z", DUE_EPOCH + 3600),
    ("2026-12-01T06:00:00Z", START),  # a time past when the upload comes: at once
], ids=["later", "past"])
def test_a_reschedule_that_comes_before_the_upload_event_is_applied_when_it_comes(
        scene, new_time, sent_at):
    key = scene.uploaded_late("b1", ["m1"], DUE)
    assert scene.request("control/batches/b1/schedule.json",
                         reschedule(new_time, "2026-12-01T07:00:00.001Z")) == "pending"
    assert scene.world.invoke(scene.stages(), key)
    result = scene.result("b1")
    assert (result["outcome"], result["send_at"], result["requested_at"]) == (
        "rescheduled", new_time, "2026-12-01T07:00:00.001Z")
    if sent_at > START:
        scene.at(sent_at - 1)
        scene.drainer().run()
        assert scene.ses.subjects() == []
        scene.at(sent_at)
        scene.drainer().run()
    assert scene.ses.subjects() == ["m1"]
    assert scene.world.invoke(scene.stages(), key), "a replayed upload event"
    scene.at(DUE_EPOCH + 7200)
    scene.drainer().run()
    assert scene.ses.subjects() == ["m1"]


def test_each_request_tells_the_site_how_it_ended(scene):
    scene.upload("b1", ["m1"], DUE)
    key = "control/batches/b1/schedule.json"
    scene.request(key, reschedule("2026-12-01T10:00:00Z", "2026-12-01T07:05:00.000Z"))
    assert (scene.result("b1")["outcome"], scene.result("b1")["send_at"]) == (
        "rescheduled", "2026-12-01T10:00:00Z")
    # Asked earlier, applied later: superseded, and its result never replaces the newer one.
    assert scene.request(key, reschedule("2026-12-01T09:00:00Z", "2026-12-01T07:01:00Z")) \
        == "superseded"
    assert scene.result("b1")["outcome"] == "rescheduled"
    scene.at(datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp())
    scene.drainer().run()
    assert scene.request(key, reschedule("2026-12-02T10:00:00Z", "2026-12-01T09:00:00Z")) \
        == "too_late"
    assert (scene.result("b1")["outcome"], scene.result("b1")["request"]) == (
        "too_late", "reschedule")
    assert scene.ses.subjects() == ["m1"]


def test_two_reschedules_in_the_same_second_the_later_millisecond_wins(scene):
    scene.upload("b1", ["m1"], DUE)
    key = "control/batches/b1/schedule.json"
    assert scene.request(key, reschedule("2026-12-01T10:00:00Z", "2026-12-01T07:05:00.900Z")) \
        == "rescheduled"
    assert scene.request(key, reschedule("2026-12-01T09:00:00Z", "2026-12-01T07:05:00.100Z")) \
        == "superseded"
    assert scene.markers() == ["held/2026-12-01T10:00:00Z/batch/b1"]
    # The same millisecond with other times: taken as the later (it was applied after).
    assert scene.request(key, reschedule("2026-12-01T11:00:00Z", "2026-12-01T07:05:00.900Z")) \
        == "rescheduled"
    assert scene.markers() == ["held/2026-12-01T11:00:00Z/batch/b1"]


def test_a_batch_reschedule_with_a_window_is_quarantined_naming_send_between(scene):
    scene.upload("b1", ["m1"], DUE)
    key = "control/batches/b1/schedule.json"
    body = {"version": 1, "send_at": None, "requested_at": "2026-12-01T07:00:00Z",
            "send_between": {"start": DUE, "end": "2026-12-01T09:00:00Z"}}
    assert scene.request(key, body) == "quarantined"
    error = json.loads(scene.s3.get_object(Bucket=BUCKET, Key=f"quarantine/{key}.error.json")
                       ["Body"].read())
    assert error["field"] == "send_between"
    assert scene.markers() == ["held/2026-12-01T08:00:00Z/batch/b1"]


def test_a_held_batch_gone_when_due_is_given_up_never_released_silently(scene, caplog):
    key = scene.upload("b1", ["m1"], DUE)
    scene.s3.delete_object(Bucket=BUCKET, Key=key)  # expired, or deleted by hand
    scene.at(DUE_EPOCH)
    report = scene.drainer().run()
    assert (report.released, report.failed) == ([], ["batch/b1"])
    held = scene.book.get(BATCH, "b1")
    assert held.state is State.FAILED
    assert scene.markers() == []
    assert any(r.levelname == "ERROR" and "given up" in r.getMessage() for r in caplog.records)
    scene.at(DUE_EPOCH + 60)
    assert scene.drainer().run().failed == [], "tried no more"


def test_a_release_that_keeps_failing_is_given_up_after_a_few_runs(scene):
    scene.upload("b1", ["m1"], DUE)

    def broken(held: Held) -> bool:
        raise ValueError("a bug")

    for run in range(MAX_RELEASE_FAILURES):
        scene.at(DUE_EPOCH + 60 * run)
        report = scene.drainer(batch=broken).run()
        last = run == MAX_RELEASE_FAILURES - 1
        assert (report.paused, report.failed) == (([], ["batch/b1"]) if last
                                                  else (["batch/b1"], []))
    assert scene.book.get(BATCH, "b1").state is State.FAILED
    assert scene.markers() == []
    assert scene.ses.subjects() == []
