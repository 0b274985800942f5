"""The Lambda end to end: S3 event in, SES mail out, outcome written (moto, chalice.test.Client)."""

from __future__ import annotations

import dataclasses
import email
import json
import os
from email import policy
from urllib.parse import quote_plus

import boto3
import pytest
from chalice.test import Client
from conftest import fixture_bytes, load_fixture
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from support.bad_input import BAD_BATCHES, FROM_NOT_ALLOWED
from support.safe_env import prepare_sender_aws

import app
from chalicelib.pipeline import process_object
from chalicelib.redrive import redrive
from chalicelib.store import BatchStore

BUCKET = os.environ["POSTBAG_BUCKET"]


@pytest.fixture
def aws():
    with mock_aws():
        yield prepare_sender_aws(app)
        app.stages.cache_clear()


def sent():
    return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages


def upload(s3, relative, key=None):
    key = key or "queue/" + relative.rsplit("/", 1)[-1]
    s3.put_object(Bucket=BUCKET, Key=key, Body=fixture_bytes(relative))
    return key


def deliver(*keys):
    with Client(app.app) as client:
        event = client.events.generate_s3_event(BUCKET, quote_plus(keys[0]))
        event["Records"] = [
            {
                **event["Records"][0],
                "s3": {**event["Records"][0]["s3"], "object": {"key": quote_plus(key), "size": 1}},
            }
            for key in keys
        ]
        return client.lambda_.invoke("on_batch_uploaded", event)


def read_json(s3, key):
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def state_of(s3, key):
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tags}.get("postbag-state")


def receipt(s3, batch_id):
    return {m["mail_id"]: m for m in read_json(s3, f"receipts/{batch_id}.json")["mails"]}


def test_plain_batch_is_sent_with_send_email(aws):
    key = upload(aws, "batches/plain.json")
    deliver(key)
    # Mails of a batch go out concurrently, so in no fixed order.
    assert sorted((m.subject, m.destinations["ToAddresses"]) for m in sent()) == [
        ("New post: Café culture", ["bob@example.net", "carol@example.net"]),
        ("New post: Café culture ☕", ["=?utf-8?q?Zo=C3=AB_Follower?= <zoe@example.net>"]),
    ]
    mails = receipt(aws, "0b7e9c1e-5a55-4c1d-9a43-3f1b8f2e7a01")
    assert {m["status"] for m in mails.values()} == {"sent"}
    assert {m["message_id"] for m in mails.values()} == {m.id for m in sent()}
    assert state_of(aws, key) == "done"


def raw_sent():
    (message,) = sent()
    return email.message_from_string(message.raw_data, policy=policy.default)


def test_attachments_go_out_with_send_raw_email(aws):
    deliver(upload(aws, "batches/with-attachments.json"))
    parsed = raw_sent()
    assert parsed["List-Unsubscribe"] == "<https://blog.example.org/unsubscribe>"
    files = {p.get_filename(): p.get_payload(decode=True) for p in parsed.iter_attachments()}
    assert files == {
        "pixel.png": fixture_bytes("attachments/pixel.png"),
        "notes.txt": fixture_bytes("attachments/notes.txt"),
    }


def test_attachment_by_reference_is_read_from_the_bucket(aws):
    document = load_fixture("batches/attachment-reference.json")
    reference = document["emails"][0]["attachments"][0]["s3_key"]
    aws.put_object(Bucket=BUCKET, Key=reference, Body=fixture_bytes("attachments/notes.txt"))
    deliver(upload(aws, "batches/attachment-reference.json"))
    (part,) = raw_sent().iter_attachments()
    assert part.get_payload(decode=True) == fixture_bytes("attachments/notes.txt")


def test_original_layout_is_sent(aws):
    deliver(upload(aws, "batches/legacy-layout.json"))
    assert sorted(m.subject for m in sent()) == [
        "Original layout still works",
        "Original layout, two recipients",
    ]


@pytest.mark.parametrize("name", [row[0] for row in BAD_BATCHES])
def test_unreadable_batch_is_quarantined_with_its_reason(aws, name):
    key = upload(aws, f"batches/bad/{name}.json")
    deliver(key)  # returns normally: a bad batch is never retried
    assert sent() == []
    error = read_json(aws, f"quarantine/{name}.json.error.json")
    expected_field = next(row[2] for row in BAD_BATCHES if row[0] == name)
    assert error["batch"] == key and error["field"] == expected_field and error["reason"]
    assert read_json(aws, f"receipts/{name}.json") == error, "the site reads receipts/ only"
    kept = aws.get_object(Bucket=BUCKET, Key=f"quarantine/{name}.json")["Body"].read()
    assert kept == fixture_bytes(f"batches/bad/{name}.json"), "nothing lost"
    assert "Contents" not in aws.list_objects_v2(Bucket=BUCKET, Prefix="queue/")


BAD_MAIL_REASONS = [
    ("mail-malformed-to", "malformed address"),
    ("mail-subject-injection", "CR or LF"),
    ("mail-too-many-recipients", "more than 50"),
    ("mail-refused-attachment-type", "refuses .exe"),
    ("mail-missing-attachment-object", "does not exist"),
]


@pytest.mark.parametrize("name, reason", BAD_MAIL_REASONS, ids=[r[0] for r in BAD_MAIL_REASONS])
def test_a_bad_mail_is_recorded_and_the_rest_sent(aws, name, reason):
    key = upload(aws, f"batches/bad/{name}.json")
    deliver(key)
    assert [m.subject for m in sent()] == ["New post: Café culture ☕"]
    mails = receipt(aws, "0b7e9c1e-5a55-4c1d-9a43-3f1b8f2e7a01")
    bad = mails["6f1c2a8e-1d2b-4c3a-8e9f-000000000002"]
    assert bad["status"] == "failed" and reason in bad["reason"]
    assert state_of(aws, key) == "failed", "kept longer than a clean batch"


def test_unverified_sender_is_a_permanent_failure_recorded_for_redrive(aws):
    document = load_fixture("batches/plain.json")
    document["meta"]["from"] = "news@example.org"
    ses = boto3.client("ses")
    ses.delete_identity(Identity="example.org")
    aws.put_object(Bucket=BUCKET, Key="queue/unverified.json", Body=json.dumps(document))
    deliver("queue/unverified.json")
    mails = receipt(aws, document["batch_id"])
    assert {m["status"] for m in mails.values()} == {"failed"}
    assert all("MessageRejected" in m["reason"] for m in mails.values())
    failed = read_json(aws, f"failed/{document['batch_id']}.json")
    assert {m["id"] for m in failed["emails"]} == set(mails)


def test_attachment_over_the_ses_limit_fails_that_mail_only(aws):
    document = load_fixture("batches/attachment-reference.json")
    reference = document["emails"][0]["attachments"][0]["s3_key"]
    aws.put_object(Bucket=BUCKET, Key=reference, Body=os.urandom(8 * 1024 * 1024))
    deliver(upload(aws, "batches/attachment-reference.json"))
    assert sent() == []
    (mail,) = receipt(aws, document["batch_id"]).values()
    assert mail["status"] == "failed" and "over SES's limit" in mail["reason"]


def test_a_mail_to_a_bcc_list_goes_to_every_bcc_address(aws):
    deliver(upload(aws, "batches/bcc-only.json"))
    (message,) = sent()
    assert message.destinations == {
        "BccAddresses": ["ivan@example.net", "judy@example.net", "ken@example.net"]
    }


def test_every_record_of_an_event_is_processed(aws):
    deliver(upload(aws, "batches/plain.json"), upload(aws, "batches/legacy-layout.json"))
    assert len(sent()) == 4


def test_a_replayed_event_sends_nothing_twice(aws):
    key = upload(aws, "batches/plain.json")
    deliver(key)
    deliver(key)
    assert len(sent()) == 2
    mails = receipt(aws, "0b7e9c1e-5a55-4c1d-9a43-3f1b8f2e7a01")
    assert {m["status"] for m in mails.values()} == {"duplicate"}
    assert {m["message_id"] for m in mails.values()} == {m.id for m in sent()}


def test_a_batch_that_is_gone_is_skipped(aws):
    response = deliver("queue/already-quarantined.json")
    assert response.payload is None and sent() == []


def test_a_margin_longer_than_the_invocation_still_lets_mail_out(aws):
    # Misconfigured: every invocation would otherwise hand all its mail on, forever.
    settings = dataclasses.replace(app.SETTINGS, deadline_margin_ms=900_000)
    stages = dataclasses.replace(app.stages(), settings=settings)
    key = upload(aws, "batches/plain.json")
    outcomes = process_object(stages, BUCKET, key, lambda: 3000)
    assert [o.status for o in outcomes] == ["sent", "sent"]


def test_a_mail_refused_by_the_format_counts_as_failed(aws, capsys):
    deliver(upload(aws, "batches/bad/mail-malformed-to.json"))
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    failed = [value for record in emf for value in record.get("MailsFailed", [])]
    assert sum(failed) == 1


def test_a_batch_the_plugin_wrote_is_sent_as_written(aws):
    document = load_fixture("batches/from-plugin.json")
    deliver(upload(aws, "batches/from-plugin.json"))
    # Mails with attachments go as MIME; the others through SES v2's Simple content (its
    # custom headers are checked against the request in tests/unit/test_send_v2.py, as
    # moto's sesv2 drops them).
    raw = [email.message_from_string(m.raw_data, policy=policy.default)
           for m in sent() if hasattr(m, "raw_data")]
    by_subject = {str(m["Subject"]): m for m in raw}
    simple = [m.subject for m in sent() if not hasattr(m, "raw_data")]
    assert sorted([*by_subject, *simple]) == sorted(m["subject"] for m in document["emails"])
    digest = by_subject["Neuer Beitrag: Grüße aus Köln"]
    assert [a.get_filename() for a in digest.iter_attachments()] == ["pixel.png", "Notizen.txt"]
    assert digest["List-Unsubscribe"] == "<https://blog.example.org/unsubscribe>"
    mails = receipt(aws, document["batch_id"])
    assert {m["status"] for m in mails.values()} == {"sent"}


def emf_counts(capsys, name):
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    return sum(value for record in emf for value in record.get(name, []))


def test_a_from_not_allowed_fails_every_mail_loudly_and_can_be_redriven(aws, capsys):
    # Issue 10: this used to quarantine the batch, with no metric and no way back.
    name, field, reason = FROM_NOT_ALLOWED
    key = upload(aws, f"batches/bad/{name}.json")
    deliver(key)
    assert sent() == []
    assert "Contents" not in aws.list_objects_v2(Bucket=BUCKET, Prefix="quarantine/")
    document = load_fixture(f"batches/bad/{name}.json")
    mails = receipt(aws, document["batch_id"])
    assert {m["status"] for m in mails.values()} == {"failed"}
    assert all(reason in m["reason"] and field in m["reason"] for m in mails.values())
    assert emf_counts(capsys, "MailsFailed") == len(document["emails"]), "the alarm fires"
    failed = read_json(aws, f"failed/{document['batch_id']}.json")
    assert {m["id"] for m in failed["emails"]} == set(mails)

    boto3.client("ses").verify_domain_identity(Domain="evil.example")
    allowed = dataclasses.replace(app.SETTINGS, allowed_senders=("example.org", "evil.example"))
    stages = dataclasses.replace(app.stages(), settings=allowed)
    (queued,) = redrive(aws, BUCKET)
    outcomes = process_object(stages, BUCKET, queued, lambda: 3000)
    assert [o.status for o in outcomes] == ["sent"] * len(document["emails"])
    assert len(sent()) == len(document["emails"])


class CrashingStore(BatchStore):
    """A store whose read of one key raises what no check names: stands in for a bug,
    as no known input makes the sender raise any more."""

    def read_batch(self, bucket, key):
        if key == "queue/crash.json":
            raise TypeError("a bug nobody wrote a check for")
        return super().read_batch(bucket, key)


def test_one_crashing_record_does_not_stop_the_others(aws, monkeypatch):
    crashing = dataclasses.replace(app.stages(), store=CrashingStore(aws))
    monkeypatch.setattr(app, "stages", lambda: crashing)
    aws.put_object(Bucket=BUCKET, Key="queue/crash.json", Body=b"{}")
    response = deliver("queue/crash.json", upload(aws, "batches/plain.json"))
    assert response.payload is None, "the handler returned normally: Lambda does not retry"
    assert len(sent()) == 2, "the record after the crash was processed"
    error = read_json(aws, "quarantine/crash.json.error.json")
    assert error["field"] == "(batch)"
    assert "TypeError: a bug nobody wrote a check for" in error["reason"]


def test_a_record_that_is_no_s3_object_is_skipped_and_the_rest_processed(aws):
    key = upload(aws, "batches/plain.json")
    with Client(app.app) as client:
        event = client.events.generate_s3_event(BUCKET, quote_plus(key))
        event["Records"].append({"eventName": "ObjectCreated:Put"})  # Chalice reads [0]
        event["Records"].append({**event["Records"][0]})
        client.lambda_.invoke("on_batch_uploaded", event)
    assert len(sent()) == 2
