"""The suppression list end to end in process: the sender's checks on both paths, the
site's inbox, SES's feedback and the minute's publishing. S3 and DynamoDB are moto, SES
the fake, time a simulated clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from conftest import load_fixture
from moto import mock_aws
from support.fakes import FakeSes
from support.jobs import JobWorld, recipients
from support.sending import Calls, DynamoDown, SerialClient
from support.world import BUCKET, SETTINGS, World, batch_document, upload

from chalicelib.config import FEEDBACK_STATUS_KEY, SUPPRESSION_EXPORT_KEY, Settings
from chalicelib.errors import TransientError
from chalicelib.feedback import FeedbackStages, handle
from chalicelib.formats.suppression import validate_export
from chalicelib.inbox import Inbox
from chalicelib.ledger import create_table
from chalicelib.observe import metrics
from chalicelib.outcome import Recorder
from chalicelib.progress import JobProgress
from chalicelib.publisher import BOUNCE_RATE, DAY_SHARDS, MIN_RATE_SENDS, Marks, Publisher
from chalicelib.redrive import redrive
from chalicelib.suppression import ADD, REMOVE, SCOPE_ALL, Change, SuppressionStore

TABLE = "postbag-test-suppression"
NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, SETTINGS.ledger_table)
        create_table(dynamodb, TABLE)  # the same key schema as the ledger's
        yield s3


@pytest.fixture
def store(aws):
    return SuppressionStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE)


def marks() -> Marks:
    return Marks(boto3.client("dynamodb", region_name="us-east-1"), SETTINGS.ledger_table,
                 SETTINGS.idempotency_namespace)


def inbox(s3, store) -> Inbox:
    return Inbox(s3, store, marks(), Recorder(s3), now=lambda: NOW)


def inbox_doc(address: str, scope: str, action: str = ADD, at: str = "2026-11-30T00:40:00Z",
              reason: str = "unsubscribe") -> dict:
    return {"version": 1, "action": action, "scope": scope, "address": address,
            "reason": reason, "source": "site", "site": "https://blog.example.org", "at": at}


def put_inbox(s3, name: str, doc: dict | bytes) -> str:
    key = f"suppressions/inbox/{name}.json"
    s3.put_object(Bucket=BUCKET, Key=key,
                  Body=doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return key


def bounce(address: str, store, at: datetime = NOW) -> None:
    store.apply(Change(ADD, SCOPE_ALL, address, "bounce", "ses", at))


# --- the batch path ------------------------------------------------------------------


@pytest.fixture
def world(aws, clock):
    return World(aws, FakeSes(clock=clock, sleep=clock.sleep), clock)


def test_a_bounced_address_in_a_batch_is_suppressed_not_sent_not_failed(world, store):
    bounce("M2@Example.NET", store)  # normalised on both sides
    key = upload(world.s3, "queue/b1.json", batch_document("b1", ["m1", "m2", "m3"]))
    assert world.invoke(world.instance(suppression=TABLE), key)
    assert sorted(world.sent_counts()) == ["m1", "m3"]
    receipt = world.receipt("b1")
    assert receipt["counts"] == {"sent": 2, "suppressed": 1}
    [entry] = [m for m in receipt["mails"] if m["mail_id"] == "m2"]
    assert entry == {"mail_id": "m2", "status": "suppressed",
                     "reason": "every recipient is on the suppression list"}
    listing = world.s3.list_objects_v2(Bucket=BUCKET, Prefix="failed/")
    assert listing.get("KeyCount", 0) == 0  # never failed, so never re-driven


def list_batch(batch_id: str, ids: list[str], list_name: str) -> dict:
    """A v1 batch naming ``list_name``, with the RFC 8058 headers the plugin computes
    (fixtures/batches/list.json's)."""
    doc = batch_document(batch_id, ids)
    doc["meta"]["headers"] = load_fixture("batches/list.json")["meta"]["headers"]
    doc["meta"]["list"] = list_name
    return doc


def test_a_list_unsubscribe_stops_only_that_lists_batches(world, store):
    store.apply(Change(ADD, "list:news", "m1@example.net", "unsubscribe", "site", NOW))
    store.apply(Change(ADD, "list:other", "m2@example.net", "unsubscribe", "site", NOW))
    key = upload(world.s3, "queue/b2.json", batch_document("b2", ["m1"]))  # no list: mailed
    assert world.invoke(world.instance(suppression=TABLE), key)
    assert world.sent_counts() == {"m1": 1}
    key = upload(world.s3, "queue/b2n.json", list_batch("b2n", ["n1", "m1", "m2"], "news"))
    assert world.invoke(world.instance(suppression=TABLE), key)
    # m1 left the news list: skipped; m2 left another list only: mailed.
    assert world.sent_counts() == {"m1": 1, "n1": 1, "m2": 1}
    receipt = world.receipt("b2n")
    assert receipt["counts"] == {"sent": 2, "suppressed": 1}
    assert [m["mail_id"] for m in receipt["mails"] if m["status"] == "suppressed"] == ["m1"]


def test_a_redrive_that_would_mail_a_suppressed_address_skips_it(world, store):
    world.ses.reject = {"m2@example.net"}
    key = upload(world.s3, "queue/b3.json", batch_document("b3", ["m1", "m2"]))
    assert world.invoke(world.instance(suppression=TABLE), key)
    world.ses.reject = set()
    bounce("m2@example.net", store)  # its bounce arrived in the meantime
    [redriven] = redrive(world.s3, BUCKET, "b3")
    assert world.invoke(world.instance(suppression=TABLE), redriven)
    assert world.sent_counts() == {"m1": 1}
    assert world.receipt("b3.redrive-1")["counts"] == {"suppressed": 1}


def test_dynamodb_failing_during_the_lookup_sends_nothing_blind(world, store):
    key = upload(world.s3, "queue/b4.json", batch_document("b4", ["m1", "m2"]))
    down = DynamoDown(SerialClient(boto3.client("dynamodb")), failing={"batch_get_item"})
    assert not world.invoke(world.instance(dynamodb=down, suppression=TABLE), key)
    assert world.ses.accepted == []
    # Lambda's retry, DynamoDB back: each mail once.
    assert world.invoke(world.instance(suppression=TABLE), key)
    assert sorted(world.sent_counts()) == ["m1", "m2"]


def test_the_lookup_is_one_batch_get_item_per_hundred_addresses(store):
    calls = Calls(store._client)
    addresses = [f"a{n}@example.net" for n in range(250)] + ["A0@example.net"]  # a repeat
    bounce("a7@example.net", store)
    calls.names.clear()
    assert store.suppressed(addresses, "news") == {"a7@example.net"}
    assert calls.names == ["BatchGetItem"] * 3


# --- the notify path -----------------------------------------------------------------


@pytest.fixture
def jobs(aws, clock):
    return JobWorld(aws, FakeSes(clock=clock, sleep=clock.sleep), clock)


def test_an_unsubscribe_after_the_job_was_queued_is_honoured(jobs, store):
    rows = recipients(6)
    job = jobs.upload_job([rows])  # split: its work items wait on the queue
    key = put_inbox(jobs.s3, "u1", inbox_doc(rows[2]["email"].upper(), "list:new-posts"))
    assert inbox(jobs.s3, store).apply(BUCKET, key) is True
    jobs.drain(lambda: jobs.instance(suppression=TABLE))
    sent = sorted(r for a in jobs.ses.accepted for r in a.recipients)
    assert sent == sorted(r["email"] for i, r in enumerate(rows) if i != 2)
    status = jobs.status(job)
    assert (status["sent"], status["suppressed"], status["failed"]) == (5, 1, 0)


def test_a_work_item_costs_one_lookup_call(jobs, store):
    rows = recipients(4)  # one work item (chunk_rows=4)
    jobs.upload_job([rows])
    dynamodb = SerialClient(boto3.client("dynamodb", region_name="us-east-1"))
    calls = Calls(dynamodb._client)
    jobs.drain(lambda: jobs.instance(suppression=TABLE, faults=lambda s, c: dynamodb
                                     if s == "dynamodb" else c))
    assert calls.names.count("BatchGetItem") == 1
    assert len(jobs.ses.accepted) == 4


def test_dynamodb_failing_during_a_work_items_lookup_sends_nothing(jobs, store):
    jobs.upload_job([recipients(4)])
    message = jobs.sqs.take()
    failing = jobs.instance(suppression=TABLE, faults=lambda s, c: DynamoDown(
        c, failing={"batch_get_item"}) if s == "dynamodb" else c)
    with pytest.raises(TransientError):
        jobs.deliver(failing, message)
    assert jobs.ses.accepted == []
    jobs.deliver(jobs.instance(suppression=TABLE), message)  # SQS delivers it again
    assert len(jobs.ses.accepted) == 4


def test_a_row_without_its_url_in_a_list_job_fails_alone(jobs, store):
    rows = recipients(2)
    del rows[1]["unsubscribe_url"]
    job = jobs.upload_job([rows])
    jobs.drain(lambda: jobs.instance(suppression=TABLE))
    assert [a.recipients for a in jobs.ses.accepted] == [(rows[0]["email"],)]
    assert jobs.status(job)["failed"] == 1


# --- the inbox -----------------------------------------------------------------------


def test_inbox_replays_are_harmless_and_an_older_remove_never_undoes_a_newer_add(aws, store):
    box = inbox(aws, store)
    add = inbox_doc("zoe@example.net", "list:news", at="2026-11-30T00:40:00Z")
    old_remove = inbox_doc("zoe@example.net", "list:news", REMOVE, "2026-11-30T00:39:59Z")
    assert box.apply(BUCKET, put_inbox(aws, "a", add)) is True
    assert box.apply(BUCKET, put_inbox(aws, "a2", add)) is False  # the same change again
    assert box.apply(BUCKET, put_inbox(aws, "r", old_remove)) is False  # arrived late
    assert store.suppressed(["zoe@example.net"], "news") == {"zoe@example.net"}
    assert box.apply(BUCKET, "suppressions/inbox/a.json") is None  # replayed event: gone
    newer_remove = inbox_doc("zoe@example.net", "list:news", REMOVE, "2026-11-30T00:40:01Z")
    assert box.apply(BUCKET, put_inbox(aws, "r2", newer_remove)) is True
    assert store.suppressed(["zoe@example.net"], "news") == set()
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="suppressions/inbox/")["KeyCount"] == 0


BAD_INBOX = [
    ("scope-bad", "scope"),
    ("address-header-injection", "address"),
    ("not-json", "(file)"),
    ("at-in-the-future", "at"),
]


@pytest.mark.parametrize(("name", "field"), BAD_INBOX, ids=[b[0] for b in BAD_INBOX])
def test_a_bad_inbox_document_is_quarantined_naming_the_field(aws, store, name, field):
    from conftest import fixture_bytes

    key = put_inbox(aws, name, fixture_bytes(f"suppression/bad/{name}.json"))
    assert inbox(aws, store).apply(BUCKET, key) is None
    error = json.loads(aws.get_object(
        Bucket=BUCKET, Key=f"quarantine/{key}.error.json")["Body"].read())
    assert (error["batch"], error["field"]) == (key, field)
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="suppressions/inbox/")["KeyCount"] == 0
    assert store.entries() == []


# --- SES feedback and the minute's publishing ----------------------------------------


def ses_event(kind: str, recipients: list[str], job: str | None = None,
              at: datetime = NOW, **detail) -> dict:
    tags = {"postbag-job": [job]} if job else {}
    event = {"eventType": kind, "mail": {"timestamp": at.isoformat().replace("+00:00", "Z"),
                                         "messageId": "m-1", "destination": recipients,
                                         "tags": tags}}
    if kind == "Bounce":
        event["bounce"] = {"bounceType": detail.get("bounce_type", "Permanent"),
                           "bouncedRecipients": [{"emailAddress": r} for r in recipients]}
    if kind == "Complaint":
        event["complaint"] = {"complainedRecipients": [{"emailAddress": r} for r in recipients]}
    return {"Sns": {"Message": json.dumps(event)}}


def feedback_stages(store, settings: Settings = SETTINGS) -> FeedbackStages:
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    progress = JobProgress(dynamodb, settings.ledger_table, settings.idempotency_namespace,
                           boto3.client("s3", region_name="us-east-1"))
    return FeedbackStages(settings, store, marks(), progress)


def publisher(aws, store) -> Publisher:
    stages = feedback_stages(store)
    return Publisher(stages.marks, store, stages.progress, Recorder(aws), now=lambda: NOW)


def test_a_hard_bounce_and_a_complaint_suppress_for_all_mail(aws, store):
    handle(feedback_stages(store), [ses_event("Bounce", ["Hard@example.net"]),
                                    ses_event("Complaint", ["angry@example.net"])], NOW)
    assert store.suppressed(["hard@example.net", "angry@example.net", "ok@example.net"]) == {
        "hard@example.net", "angry@example.net"}
    assert [(e.address, e.scope, e.reason, e.source) for e in store.entries()] == [
        ("angry@example.net", "all", "complaint", "ses"), ("hard@example.net", "all", "bounce",
                                                          "ses")]


def test_transient_bounces_do_not_suppress_until_the_threshold(aws, store):
    settings = Settings(soft_bounce_limit=3, soft_bounce_days=7,
                        ledger_table=SETTINGS.ledger_table,
                        idempotency_namespace=SETTINGS.idempotency_namespace)
    stages = feedback_stages(store, settings)
    soft = ses_event("Bounce", ["full@example.net"], bounce_type="Transient",
                     at=NOW - timedelta(days=8))
    handle(stages, [soft], NOW)  # too old to count with the next ones
    for days in (2, 1):
        handle(stages, [ses_event("Bounce", ["full@example.net"], bounce_type="Transient",
                                  at=NOW - timedelta(days=days))], NOW)
    assert store.suppressed(["full@example.net"]) == set()
    handle(stages, [ses_event("Bounce", ["full@example.net"], bounce_type="Transient")], NOW)
    assert store.suppressed(["full@example.net"]) == {"full@example.net"}


def test_feedback_is_counted_per_day_and_per_job_and_published(jobs, store):
    rows = recipients(4)
    job = jobs.upload_job([rows])
    jobs.drain(lambda: jobs.instance(suppression=TABLE))
    stages = feedback_stages(store)
    events = [ses_event("Send", [r["email"]], job) for r in rows]
    events += [ses_event("Delivery", [r["email"]], job) for r in rows[:3]]
    events += [ses_event("Bounce", [rows[3]["email"]], job), ses_event("Open", [], job)]
    handle(stages, events, NOW)
    done = publisher(jobs.s3, store).run(BUCKET)
    assert done is not None and done.jobs == (job,) and done.export
    status = jobs.status(job)
    assert {k: status["feedback"][k] for k in ("delivered", "bounced", "opens")} == {
        "delivered": 3, "bounced": 1, "opens": 1}
    document = json.loads(jobs.s3.get_object(Bucket=BUCKET, Key=FEEDBACK_STATUS_KEY)["Body"]
                          .read())
    today = document["days"][0]
    assert (today["date"], today["sent"], today["delivered"], today["bounced"]) == (
        "2026-11-30", 4, 3, 1)
    assert document["bounce_rate_7d"] == 0.25 and document["complaint_rate_7d"] == 0.0
    export = json.loads(jobs.s3.get_object(Bucket=BUCKET, Key=SUPPRESSION_EXPORT_KEY)["Body"]
                        .read())
    validate_export(export)
    assert [e["address"] for e in export["entries"]] == [rows[3]["email"]]
    assert publisher(jobs.s3, store).run(BUCKET) is None  # nothing new: nothing written


def test_a_burst_of_unsubscribes_writes_the_export_once(aws, store):
    box = inbox(aws, store)
    for n in range(50):
        box.apply(BUCKET, put_inbox(aws, f"u{n}", inbox_doc(f"u{n}@example.net", "all")))
    writes = []
    aws.meta.events.register("provide-client-params.s3.PutObject",
                             lambda params, **_: writes.append(params["Key"]))
    publisher(aws, store).run(BUCKET)
    publisher(aws, store).run(BUCKET)
    assert writes == [SUPPRESSION_EXPORT_KEY]
    export = json.loads(aws.get_object(Bucket=BUCKET, Key=SUPPRESSION_EXPORT_KEY)["Body"].read())
    assert len(export["entries"]) == 50


def test_an_event_for_an_expired_job_marks_nothing_and_publishes_nothing(aws, store):
    stages = feedback_stages(store)
    handle(stages, [ses_event("Delivery", ["x@example.net"], job="gone-job")], NOW)
    taken = publisher(aws, store).run(BUCKET)
    assert taken is not None and taken.jobs == () and taken.feedback
    assert aws.list_objects_v2(Bucket=BUCKET, Prefix="jobs/").get("KeyCount", 0) == 0
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=SETTINGS.ledger_table,
        Key={"id": {"S": f"{SETTINGS.idempotency_namespace}#job#gone-job"}})
    assert "Item" not in item  # no stray item holding only finished_at


def test_marks_already_there_cost_a_read_not_a_write(aws, store):
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    calls = Calls(dynamodb)
    stages = feedback_stages(store)
    stages = FeedbackStages(stages.settings, stages.store,
                            Marks(dynamodb, SETTINGS.ledger_table, SETTINGS.idempotency_namespace),
                            stages.progress)
    handle(stages, [ses_event("Delivery", ["a@example.net"])], NOW)
    calls.names.clear()
    for _ in range(5):
        handle(stages, [ses_event("Delivery", ["a@example.net"])], NOW)
    # Per event: its day's counter, and a read of the marks (already there: no write).
    assert calls.names == ["UpdateItem", "GetItem"] * 5


def test_what_is_counted_while_the_run_writes_is_written_by_the_next(aws, store):
    stages = feedback_stages(store)
    handle(stages, [ses_event("Delivery", ["a@example.net"])], NOW)
    late = []

    def counted_meanwhile(params, **_):
        if params["Key"] == FEEDBACK_STATUS_KEY and not late:
            late.append(1)  # an event handled after the run took the marks
            handle(stages, [ses_event("Delivery", ["b@example.net"])], NOW)

    aws.meta.events.register("provide-client-params.s3.PutObject", counted_meanwhile)
    assert publisher(aws, store).run(BUCKET) is not None
    assert publisher(aws, store).run(BUCKET) is not None  # marked again by the late event
    document = json.loads(aws.get_object(Bucket=BUCKET, Key=FEEDBACK_STATUS_KEY)["Body"].read())
    assert document["days"][0]["delivered"] == 2


def test_a_run_that_fails_puts_its_marks_back(aws, store):
    handle(feedback_stages(store), [ses_event("Delivery", ["a@example.net"])], NOW)
    stages = feedback_stages(store)
    broken = Publisher(stages.marks, store, stages.progress,
                       Recorder(boto3.client("s3", region_name="eu-west-1",
                                             endpoint_url="http://127.0.0.1:9")), now=lambda: NOW)
    with pytest.raises(TransientError):
        broken.run(BUCKET)
    assert publisher(aws, store).run(BUCKET).feedback


def test_each_days_counters_are_spread_over_shards_and_added_up(aws, store):
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    shards = iter(range(DAY_SHARDS))
    spread = Marks(dynamodb, SETTINGS.ledger_table, SETTINGS.idempotency_namespace,
                   shard=lambda: next(shards))
    for _ in range(DAY_SHARDS):
        spread.count({"2026-11-30": {"sent": 2, "bounced": 1}})
    assert spread.days(["2026-11-30", "2026-11-29"]) == {
        "2026-11-30": {"sent": 2 * DAY_SHARDS, "bounced": DAY_SHARDS}}


@pytest.mark.parametrize(("sent", "bounced", "published"), [
    (2, 1, False), (MIN_RATE_SENDS - 1, 20, False), (MIN_RATE_SENDS, 20, True)],
    ids=["one-bounce-in-two", "just-under-the-minimum", "at-the-minimum"])
def test_the_rates_are_metrics_only_over_a_minimum_of_sends(aws, store, sent, bounced,
                                                            published):
    metrics.clear_metrics()
    stages = feedback_stages(store)
    stages.marks.count({"2026-11-30": {"sent": sent, "bounced": bounced}})
    stages.marks.mark(feedback=True)
    publisher(aws, store).run(BUCKET)
    assert (BOUNCE_RATE in metrics.metric_set) is published
    metrics.clear_metrics()


def test_changes_within_one_second_are_ordered_by_their_milliseconds(aws, store):
    # The plugin writes `at` with milliseconds (php.md 10): an unsubscribe and an admin's
    # removal in the same second must both count, in order, whichever arrives first.
    box = inbox(aws, store)
    add = inbox_doc("ann@example.net", "all", ADD, "2026-11-30T00:40:00.100Z")
    remove = inbox_doc("ann@example.net", "all", REMOVE, "2026-11-30T00:40:00.101Z",
                       reason="manual")
    assert box.apply(BUCKET, put_inbox(aws, "s1", add)) is True
    assert box.apply(BUCKET, put_inbox(aws, "s2", remove)) is True
    assert store.suppressed(["ann@example.net"]) == set()
    # The other order: the later add arrives first, the earlier remove changes nothing.
    late_add = inbox_doc("bob@example.net", "all", ADD, "2026-11-30T00:40:00.999Z")
    early_remove = inbox_doc("bob@example.net", "all", REMOVE, "2026-11-30T00:40:00.998Z",
                             reason="manual")
    assert box.apply(BUCKET, put_inbox(aws, "s3", late_add)) is True
    assert box.apply(BUCKET, put_inbox(aws, "s4", early_remove)) is False
    assert store.suppressed(["bob@example.net"]) == {"bob@example.net"}


def test_a_replayed_batch_reports_a_mail_sent_before_its_address_was_suppressed_as_sent(
        world, store):
    key = upload(world.s3, "queue/b7.json", batch_document("b7", ["m1", "m2"]))
    assert world.invoke(world.instance(suppression=TABLE), key)
    bounce("m1@example.net", store)  # its bounce came in before the event was replayed
    upload(world.s3, key, batch_document("b7", ["m1", "m2"]))  # the plugin's re-upload
    assert world.invoke(world.instance(suppression=TABLE), key)
    assert world.sent_counts() == {"m1": 1, "m2": 1}
    # Both reported as the ledger has them (a replay of a sent mail), m1 not "suppressed".
    statuses = {m["mail_id"]: m["status"] for m in world.receipt("b7")["mails"]}
    assert statuses == {"m1": "duplicate", "m2": "duplicate"}


def test_a_redelivered_work_item_reports_a_row_sent_before_its_address_was_suppressed_as_sent(
        jobs, store):
    rows = recipients(4)
    job = jobs.upload_job([rows])
    message = jobs.sqs.take()
    jobs.deliver(jobs.instance(suppression=TABLE), message)
    bounce(rows[1]["email"], store)
    jobs.deliver(jobs.instance(suppression=TABLE), message)  # SQS delivers it again
    assert len(jobs.ses.accepted) == 4
    status = jobs.status(job)
    assert (status["sent"], status["suppressed"]) == (4, 0)
