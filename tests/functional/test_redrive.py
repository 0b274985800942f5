"""Re-drive of failed mails (moto S3): back to the queue once, with a new redrive count."""

from __future__ import annotations

import json

import boto3
import pytest
from conftest import load_fixture
from moto import mock_aws

from chalicelib.errors import BatchFormatError
from chalicelib.formats import parse_batch
from chalicelib.redrive import redrive

BUCKET = "postbag-test"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def failed_batch(batch_id: str, mail_ids: list[str], redrive_count: int = 0, part: int = 0):
    doc = load_fixture("batches/plain.json")
    template = doc["emails"][0]
    doc["batch_id"] = batch_id
    doc["emails"] = [{**template, "id": mail_id} for mail_id in mail_ids]
    if redrive_count:
        doc["redrive"] = redrive_count
    if part:
        doc["continuation"] = {"of": f"queue/{batch_id}.json", "part": part}
    return doc


def put(s3, key: str, doc) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())


def read(s3, key: str):
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def keys(s3, prefix: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_a_failed_batch_moves_to_the_queue_with_the_next_redrive_count(s3, settings):
    put(s3, "failed/b1.json", failed_batch("b1", ["m1", "m2"]))
    assert redrive(s3, BUCKET) == ["queue/b1.redrive-1.json"]
    doc = read(s3, "queue/b1.redrive-1.json")
    assert doc["redrive"] == 1
    assert [m["id"] for m in doc["emails"]] == ["m1", "m2"]
    assert keys(s3, "failed/") == []
    batch = parse_batch(json.dumps(doc).encode(), "queue/b1.redrive-1.json", settings)
    assert (batch.batch_id, batch.redrive, batch.part, batch.rejected) == ("b1", 1, 0, ())


def test_only_the_named_batch_is_redriven(s3, settings):
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))
    put(s3, "failed/b10.json", failed_batch("b10", ["m1"]))
    put(s3, "failed/b2.json", failed_batch("b2", ["m1"]))
    assert redrive(s3, BUCKET, batch_id="b1") == ["queue/b1.redrive-1.json"]
    assert keys(s3, "failed/") == ["failed/b10.json", "failed/b2.json"]


def test_the_parts_of_one_generation_become_one_batch(s3, settings):
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))
    put(s3, "failed/b1.part-1.json", failed_batch("b1", ["m7", "m8"], part=1))
    assert redrive(s3, BUCKET) == ["queue/b1.redrive-1.json"]
    doc = read(s3, "queue/b1.redrive-1.json")
    assert [m["id"] for m in doc["emails"]] == ["m1", "m7", "m8"]
    assert "continuation" not in doc


def test_generations_are_redriven_apart(s3, settings):
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))
    put(s3, "failed/b1.redrive-1.json", failed_batch("b1", ["m2"], redrive_count=1))
    written = redrive(s3, BUCKET)
    assert written == ["queue/b1.redrive-1.json", "queue/b1.redrive-2.json"]
    assert [m["id"] for m in read(s3, "queue/b1.redrive-1.json")["emails"]] == ["m1"]
    assert read(s3, "queue/b1.redrive-2.json")["redrive"] == 2


def test_redriving_again_after_a_crash_writes_the_same_batch(s3, settings):
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))
    redrive(s3, BUCKET)
    first = read(s3, "queue/b1.redrive-1.json")
    put(s3, "failed/b1.json", failed_batch("b1", ["m1"]))  # as if the delete never happened
    assert redrive(s3, BUCKET) == ["queue/b1.redrive-1.json"]
    assert read(s3, "queue/b1.redrive-1.json") == first  # same redrive count: same keys


def test_nothing_failed_nothing_written(s3, settings):
    assert redrive(s3, BUCKET) == []
    assert keys(s3, "queue/") == []


def test_a_broken_failed_file_is_named(s3, settings):
    s3.put_object(Bucket=BUCKET, Key="failed/broken.json", Body=b"{not json")
    with pytest.raises(BatchFormatError, match="failed/broken.json"):
        redrive(s3, BUCKET)
