"""Notify jobs' fan-out: every recipient exactly once, whatever SQS and SES do.

S3 and DynamoDB are moto; SES is the fake (faults on demand); the work queue is
``support.jobs.FakeSqs`` (each message delivered when the test says); time is a
simulated clock. Mails are told apart by their recipient's address.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import types

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws
from support.fakes import FakeSes
from support.jobs import BUCKET, SETTINGS, JobWorld, assert_each_once, recipients, wait_real
from support.sending import AnswerLost, FailsOnce, Invocation, PublishingSender

import app
from chalicelib.errors import BatchFormatError
from chalicelib.fanout import (
    PAUSE_DELAY_SECONDS,
    UNSETTLED_HAND_BACKS,
    JobCache,
    handle_message,
)
from chalicelib.ledger import create_table
from chalicelib.redrive import redrive_job


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_table(boto3.client("dynamodb", region_name="us-east-1"), SETTINGS.ledger_table)
        yield s3


@pytest.fixture
def world(aws, clock):
    return JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep), clock)


def emails(rows: list[dict]) -> list[str]:
    return [row["email"] for row in rows]


def test_a_job_is_sent_to_every_recipient_once_and_counted(world):
    rows = recipients(10)
    job = world.upload_job([rows[:6], rows[6:]])
    assert len(world.sqs.messages) == 3  # chunks of 4 rows: 4 + 2 of part 1, 4 of part 2
    world.drain()
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["remaining"]) == ("done", 10, 0)


def test_the_mail_goes_through_ses_v2_with_the_jobs_headers_and_ledger_tag(world):
    rows = recipients(1)
    job = world.upload_job([rows])
    world.drain()
    [accepted] = world.ses.accepted
    params = accepted.params
    assert accepted.operation == "SendEmailV2"
    # The job names a list: the row's one-click unsubscribe headers (RFC 8058), exactly.
    assert params["Content"]["Simple"]["Headers"] == [
        {"Name": "X-Postbag-Campaign", "Value": "new-post 42"},
        {"Name": "List-Unsubscribe", "Value": f"<{rows[0]['unsubscribe_url']}>"},
        {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}]
    assert params["ConfigurationSetName"] == "postbag"
    tags = {t["Name"]: t["Value"] for t in params["EmailTags"]}
    assert set(tags) == {"source", "postbag-key", "postbag-job", "postbag-list"}
    assert (tags["postbag-job"], tags["postbag-list"]) == (job, "new-posts")
    assert params["Destination"] == {"ToAddresses": ["R 0 <r0000@example.net>"]}


def test_the_same_message_delivered_twice_sends_and_counts_nothing_twice(world):
    rows = recipients(4)
    job = world.upload_job([rows])
    [message] = world.sqs.messages
    first = world.deliver(world.instance(), message)
    again = world.deliver(world.instance(), message)
    assert first.counts == {"sent": 4} and again.counts == {}
    assert_each_once(world, emails(rows))
    assert world.status(job)["sent"] == 4


def test_the_same_message_delivered_twice_at_once(aws, clock):
    ses = FakeSes(latency=0.002)  # real time, so that the two deliveries overlap
    world = JobWorld(aws, ses, clock)
    rows = recipients(40)
    job = world.upload_job([rows])
    messages = list(world.sqs.messages)
    world.sqs.messages.clear()

    def deliver_all():
        for message in messages:
            world.deliver(world.instance(), message)

    threads = [threading.Thread(target=deliver_all) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.drain()  # what either handed back (rows the other held)
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["duplicate"]) == ("done", 40, 0)


def test_concurrent_chunks_with_overlapping_addresses_send_each_address_once(aws, clock):
    ses = FakeSes(latency=0.002)
    world = JobWorld(aws, ses, clock)
    rows = recipients(24)
    # Every address twice, in different chunks and parts (upper case: the same mailbox).
    again = [{**row, "email": row["email"].upper()} for row in reversed(rows)]
    job = world.upload_job([rows, again])
    messages = list(world.sqs.messages)
    world.sqs.messages.clear()
    threads = [threading.Thread(target=world.deliver, args=(world.instance(), m))
               for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.drain()
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["duplicate"]) == ("done", 24, 24)


def test_an_address_twice_in_one_chunk_is_sent_once(world):
    rows = recipients(3)
    job = world.upload_job([[rows[0], rows[1], rows[0], rows[2]]])
    world.drain()
    assert_each_once(world, emails(rows))
    assert (world.status(job)["sent"], world.status(job)["duplicate"]) == (3, 1)


class Crash(BaseException):
    """The instance dies mid-send (timeout, out of memory): no release, no record."""


def test_a_sender_killed_mid_chunk_is_finished_by_the_redelivered_message(aws, clock):
    ses = FakeSes(clock=clock, sleep=clock.sleep, fail_after=2, hard_failure=Crash)
    world = JobWorld(aws, ses, clock)
    rows = recipients(12)
    job = world.upload_job([rows])
    first = world.sqs.take()
    with pytest.raises(Crash):
        # Real milliseconds: the ledger times claims by the wall clock.
        world.deliver(world.instance(workers=1), first, remaining_ms=lambda: 1500)
    ses.fail_after = None
    assert len(ses.accepted) == 2  # the third call crashed before SES took it
    wait_real(1.55)  # past the dead instance's claims
    world.sqs.messages.insert(0, first)  # SQS delivers it again after the visibility timeout
    world.drain()
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["duplicate"]) == ("done", 12, 0)


def test_the_deadline_hands_the_rest_of_a_chunk_back_at_once(aws, clock):
    settings = dataclasses.replace(SETTINGS, chunk_rows=20, deadline_margin_ms=15_000)
    world = JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep, latency=1.0), clock, settings)
    rows = recipients(20)
    job = world.upload_job([rows])
    message = world.sqs.take()
    budget = Invocation(clock, budget_s=20.0).get_remaining_time_in_millis
    handled = world.deliver(world.instance(workers=1), message, remaining_ms=budget)
    assert 0 < len(world.ses.accepted) < 20
    assert handled.delay == 0 and handled.handed_back.start == handled.counts["sent"]
    assert world.status(job)["sent"] == handled.counts["sent"]
    world.drain()
    assert_each_once(world, emails(rows))
    assert world.status(job)["sent"] == 20


def test_throttling_is_retried_and_sends_each_once(aws, clock):
    world = JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep, throttle_share=0.4), clock)
    rows = recipients(30)
    job = world.upload_job([rows])
    world.drain()
    assert world.ses.throttled > 0
    assert_each_once(world, emails(rows))
    assert world.status(job)["sent"] == 30


def test_a_chunk_the_daily_quota_has_no_room_for_waits_on_the_queue(aws, clock):
    world = JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep, daily_quota=6), clock)
    rows = recipients(8)
    job = world.upload_job([rows])
    world.deliver(world.instance(), world.sqs.take())
    handled = world.deliver(world.instance(), world.sqs.take())  # 4 sent + 4 > 6
    assert handled.delay == PAUSE_DELAY_SECONDS and handled.handed_back.start == 4
    assert world.ses.calls == 4 and world.status(job)["sent"] == 4
    world.ses.daily_quota = 100  # a day later
    world.drain()
    assert_each_once(world, emails(rows))


def test_the_daily_quota_running_out_mid_job_pauses_then_resumes(aws, clock):
    world = JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep), clock)
    rows = recipients(12)
    job = world.upload_job([rows])
    instance = world.instance(workers=1)
    world.deliver(instance, world.sqs.take())
    # Other senders use up the quota; this instance read it before and lets the chunk go.
    world.ses.daily_quota = len(world.ses.accepted) + 2
    handled = world.deliver(instance, world.sqs.take())
    assert handled.delay == PAUSE_DELAY_SECONDS
    assert (handled.counts, handled.handed_back.start) == ({"sent": 2}, 6)
    assert world.deliver(instance, world.sqs.take()).counts == {}  # held back, not failed
    assert world.status(job)["failed"] == 0
    world.ses.daily_quota = None
    world.drain()
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["failed"]) == ("done", 12, 0)


def test_a_job_cancelled_mid_way_counts_the_rest_cancelled(world):
    rows = recipients(12)
    job = world.upload_job([rows])
    world.deliver(world.instance(), world.sqs.take())
    world.cancel(job)
    world.drain()
    assert world.sent_to() == {row["email"]: 1 for row in rows[:4]}
    status = world.status(job)
    assert (status["state"], status["sent"], status["cancelled"]) == ("cancelled", 4, 8)


def test_bad_rows_and_failed_recipients_fail_alone_and_can_be_redriven(world):
    rows = recipients(6)
    unrenderable = {**rows[1], "vars": {"post": "no url here"}}  # {{ post.url }} fails
    refused = rows[2]["email"]
    world.ses.reject = {refused}
    part = [rows[0], unrenderable, rows[2], "not json", {"email": "Bo <bo@example.net>"},
            rows[3], rows[4], rows[5]]
    job = world.upload_job([part])
    world.drain()
    assert_each_once(world, [rows[0]["email"], *emails(rows[3:])])
    status = world.status(job)
    assert (status["state"], status["sent"], status["failed"]) == ("done", 4, 4)
    documents = [json.loads(world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
                 for key in failed_documents(world)]  # one per chunk with failures
    failed = [json.loads(row)["email"] for doc in documents for row in doc["rows"]]
    assert failed == [rows[1]["email"], refused]
    reasons = [r["reason"] for doc in documents for r in doc["reasons"]]
    assert "RenderError" in reasons[0] and "MessageRejected" in reasons[1]
    rejected = [r for doc in documents for r in doc["rejected"]]
    assert [r["mail_id"] for r in rejected] == ["0:3", "0:4"]
    assert "not JSON" in rejected[0]["reason"] and "bare address" in rejected[1]["reason"]
    world.ses.reject = set()  # the address is fixed: re-drive
    [item] = redrive_job(world.s3, world.queue, BUCKET, job)
    assert item.redrive == 1 and len(item.rows) == 2
    world.drain()
    assert world.sent_to()[refused] == 1
    status = world.status(job)
    assert (status["sent"], status["failed"]) == (5, 3)  # the template still fails for one
    assert [k.split("/")[3] for k in failed_documents(world)] == ["redrive-1"]


def failed_documents(world) -> list[str]:
    listing = world.s3.list_objects_v2(Bucket=BUCKET, Prefix="failed/jobs/")
    return [o["Key"] for o in listing.get("Contents", [])]


def test_a_job_whose_manifest_is_gone_drops_its_items(world):
    job = world.upload_job([recipients(2)])
    world.s3.delete_object(Bucket=BUCKET, Key=f"jobs/{job}/manifest.json")
    handled = world.deliver(world.instance(), world.sqs.take())
    assert "is gone" in handled.dropped and world.ses.calls == 0


def test_a_manifest_gone_mid_job_fails_the_rest_for_the_record_and_the_job_ends(world):
    rows = recipients(8)
    job = world.upload_job([rows])  # two chunks of four
    world.deliver(world.instance(), world.sqs.take())
    world.s3.delete_object(Bucket=BUCKET, Key=f"jobs/{job}/manifest.json")  # expired
    world.drain()
    assert_each_once(world, emails(rows[:4]))
    status = world.status(job)
    assert (status["state"], status["sent"], status["failed"]) == ("done", 4, 4)
    [key] = failed_documents(world)
    document = json.loads(world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert [r["mail_id"] for r in document["rejected"]] == ["0:4", "0:5", "0:6", "0:7"]
    assert all("is gone" in r["reason"] for r in document["rejected"])


@pytest.mark.parametrize("body", ["", "[]", '{"job_id": "j"}', "{" * 5000, '{"bucket": 1}'],
                         ids=["empty", "array", "fields-missing", "deep", "bucket-number"])
def test_a_message_that_is_no_work_item_is_dropped(world, body):
    assert handle_message(world.instance(), body, lambda: 60_000) is None


def test_the_handler_drops_a_message_that_is_no_work_item_without_raising(aws):
    app.fanout_stages.cache_clear()  # its clients must be made inside the mock
    try:
        with Client(app.app) as client:
            event = client.events.generate_sqs_event(["not json"], queue_name="work")
            assert client.lambda_.invoke("on_work_item", event).payload is None
    finally:
        app.fanout_stages.cache_clear()


def test_lost_answers_are_settled_by_send_events_and_counted_once(aws, clock):
    world = JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep, lose_answer_share=0.15,
                                  seed=3), clock)
    world.wall_clock = clock  # the evidence window passes in simulated time

    rows = recipients(40)
    job = world.upload_job([rows])
    world.drain(lambda: world.instance(evidence_window=60.0,
                                       sender=PublishingSender(
                                           world.ses, world.ses,
                                           publish=world.publish_send_events)))
    assert world.ses.lost_answers > 3
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["duplicate"]) == ("done", 40, 0)


def test_an_instance_parses_a_manifest_once_per_version(world):
    job = world.upload_job([recipients(2)])
    key = f"jobs/{job}/manifest.json"
    jobs = world.instance().jobs
    first = jobs.job(BUCKET, key, SETTINGS)
    assert jobs.job(BUCKET, key, SETTINGS) is first  # S3 answered 304 Not Modified
    body = world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=body + b"\n")  # a new version
    assert jobs.job(BUCKET, key, SETTINGS) is not first


def _status_put(params) -> bool:
    return params.get("Key", "").endswith("/status.json")


def _counting(params) -> bool:
    """A write to a job's counts or to a chunk's tally, whichever call makes it."""
    writes = [entry["Update"] for entry in params.get("TransactItems", ()) if "Update" in entry]
    keys = [write["Key"]["id"]["S"] for write in [params, *writes] if "Key" in write]
    return any("#tally#" in key or "#job#" in key for key in keys)


COUNTING_WRITES = ("transact_write_items", "update_item")


@pytest.mark.parametrize("fault", [
    lambda service, client: FailsOnce(client, "put_object", _status_put)
    if service == "s3" else client,
    lambda service, client: AnswerLost(client, COUNTING_WRITES, False, _counting)
    if service == "dynamodb" else client,
    lambda service, client: AnswerLost(client, COUNTING_WRITES, True, _counting)
    if service == "dynamodb" else client,
], ids=["status-json-write-failed", "count-answer-lost", "count-answer-lost-and-retried"])
def test_a_fault_after_the_counts_were_written_never_counts_rows_twice(world, fault):
    rows = recipients(4)
    job = world.upload_job([rows])
    faulty = world.instance(faults=fault)
    world.drain(lambda: faulty)
    assert_each_once(world, emails(rows))
    status = world.status(job)
    assert (status["state"], status["sent"], status["recipients"]) == ("done", 4, 4)
    progress = world.progress().status(BUCKET, job)
    assert (progress["sent"], progress["state"]) == (4, "done")


def test_a_part_replaced_by_a_larger_object_is_read_no_further_than_its_size(world):
    job_id = world.upload_job([recipients(2)])
    job = world.instance().jobs.job(BUCKET, f"jobs/{job_id}/manifest.json", SETTINGS)
    read = []

    def endless(bucket, key):
        for _ in range(10_000):  # an object far larger than the manifest says
            read.append(1)
            yield b"x" * 1024

    store = dataclasses.replace(world.instance().mail, store=types.SimpleNamespace(stream=endless))
    with pytest.raises(BatchFormatError, match="changed since the job was split"):
        JobCache(world.s3).part(store, BUCKET, job, 0)
    assert len(read) <= job.parts[0].bytes // 1024 + 2


def test_rows_ses_never_settles_fail_after_a_bounded_number_of_hand_backs(aws, clock):
    world = JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep, fail_after=0), clock)
    rows = recipients(3)
    job = world.upload_job([rows])
    handled = world.drain()
    assert [h.handed_back.attempt for h in handled if h.handed_back] == list(
        range(1, UNSETTLED_HAND_BACKS + 1))
    status = world.status(job)
    assert (status["state"], status["failed"], status["sent"]) == ("done", 3, 0)
    [key] = failed_documents(world)
    document = json.loads(world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert [json.loads(row)["email"] for row in document["rows"]] == emails(rows)
    assert all(f"unsettled after {UNSETTLED_HAND_BACKS} hand-backs" in r["reason"]
               for r in document["reasons"])


def test_hand_backs_while_the_account_is_paused_are_not_bounded(aws, clock):
    world = JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep, paused=True), clock)
    world.upload_job([recipients(3)])
    for _ in range(UNSETTLED_HAND_BACKS + 3):
        handled = world.deliver(world.instance(quota_refresh=0), world.sqs.take())
        assert handled.handed_back is not None and handled.handed_back.attempt == 0


def test_the_harness_fails_on_a_bug_rather_than_delivering_again(world):
    world.upload_job([recipients(1)])

    def buggy_instance():
        raise RuntimeError("a bug, not a fault SQS's redelivery covers")

    with pytest.raises(RuntimeError):
        world.drain(buggy_instance)
