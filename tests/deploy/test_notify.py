"""``postbag notify``, ``cancel`` and ``status --job`` against moto (in process): the
job uploaded is what the sender's own parsers accept, parts before the manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from chalicelib.config import Settings
from chalicelib.errors import PostbagError
from chalicelib.formats import v2
from chalicelib.ledger import create_table
from chalicelib.model import NotifyJob
from chalicelib.progress import JobProgress
from postbag import chalice_config, cli, jobs, notify
from postbag.aws import CommandError
from postbag.notify import PART_ROWS, sender_checks

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "jobs" / "cli"
BUCKET = "site-mail"
REGION = "us-east-1"
SETTINGS = Settings(allowed_senders=("example.org",), ledger_table="postbag-test-ledger")
JOB = "7d3f0c2a-9b1e-4f5a-8c6d-2e4b1a0f9c01"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "cli")
    return tmp_path / "cli"


def write_spec(folder: Path, **changes) -> Path:
    spec = json.loads((FIXTURES / "new-post.json").read_text()) | changes
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def upload_order(s3) -> list[str]:
    """The keys ``s3`` puts, in order (botocore's own event hook, nothing of ours replaced)."""
    keys: list[str] = []
    s3.meta.events.register("provide-client-params.s3.PutObject",
                            lambda params, **_: keys.append(params["Key"]))
    return keys


def send(s3, spec: Path, job_id: str = JOB) -> notify.Outcome:
    return notify.notify(s3, BUCKET, spec, *sender_checks(SETTINGS), job_id=job_id)


def stored(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def accepted(s3, outcome: notify.Outcome) -> tuple[NotifyJob, list[list[str]]]:
    """The job as the sender parses it, and each part's addresses as the sender reads them,
    with every stored part's size and checksum as the manifest says."""
    job = v2.parse_manifest(stored(s3, outcome.manifest_key), outcome.manifest_key, SETTINGS)
    addresses = []
    for index, part in enumerate(job.parts):
        body = stored(s3, part.key)
        assert (len(body), hashlib.sha256(body).hexdigest()) == (part.bytes, part.sha256)
        assert v2.count_rows(body, index, part.key) == part.rows <= PART_ROWS
        rows, bad = v2.read_rows(body, index, 0, part.rows, part.key)
        assert bad == []
        addresses.append([r.email for r in rows])
    return job, addresses


# -- what is uploaded -----------------------------------------------------------------


def test_csv_recipients_become_a_job_the_sender_accepts_manifest_last(s3, spec_dir):
    order = upload_order(s3)
    outcome = send(s3, spec_dir / "new-post.json")
    job, addresses = accepted(s3, outcome)
    assert job.job_id == outcome.job_id == JOB
    assert addresses == [["zoe@example.net", "bob@example.net", "chen@example.net"]]
    assert (job.recipients, outcome.recipients, outcome.parts) == (3, 3, 1)
    assert order == [f"jobs/{JOB}/part-00001.ndjson.gz", f"jobs/{JOB}/manifest.json"]
    assert job.meta.sender == ("Blog", "news@example.org")
    assert job.list_name == "new-posts" and job.context["post"]["title"] == "Café culture"
    rows, _ = v2.read_rows(stored(s3, job.parts[0].key), 0, 0, 3, "p")
    assert [(r.name, r.user_id) for r in rows] == [("Zoë Durand", 12), ("", 13), ("陈伟", None)]


def test_bad_csv_rows_are_left_out_each_with_its_line_and_reason(s3, spec_dir):
    skipped = send(s3, spec_dir / "new-post.json").skipped
    assert [reason.split(":")[:2] for reason in skipped] == [
        ["recipients.csv", "5"], ["recipients.csv", "6"], ["recipients.csv", "7"],
        ["recipients.csv", "8"],
    ]
    assert "field email" in skipped[0] and "not-an-address" in skipped[0]
    assert "bare address" in skipped[1]
    assert "user_id 'sixteen' is not a number" in skipped[2]
    assert "4 columns" in skipped[3]


def test_ndjson_recipients_keep_their_vars_and_bad_lines_are_named(s3, spec_dir):
    outcome = send(s3, write_spec(spec_dir, recipients="recipients.ndjson"))
    job, addresses = accepted(s3, outcome)
    assert addresses == [["zoe@example.net", "bob@example.net", "chen@example.net"]]
    rows, _ = v2.read_rows(stored(s3, job.parts[0].key), 0, 0, 3, "p")
    assert rows[0].vars == {"new_followers": ["Ana", "Bo"]}
    lines = {reason.split(":")[1]: reason for reason in outcome.skipped}
    assert sorted(lines, key=int) == ["5", "6", "7", "8", "9"]
    assert "field email" in lines["5"]
    assert "field name" in lines["6"] and "CR or LF" in lines["6"]
    assert "colour" in lines["8"]
    assert "not JSON" in lines["9"]


def test_inline_recipients(s3, spec_dir):
    outcome = send(s3, write_spec(spec_dir, recipients=[
        {"email": "a@example.net", "vars": {"n": 1}}, {"email": "b@example.net"}, "c@example.net",
    ]))
    _, addresses = accepted(s3, outcome)
    assert addresses == [["a@example.net", "b@example.net"]]
    assert outcome.skipped[0].startswith("spec.json recipients[2]:3:")


def test_a_large_list_is_cut_into_parts_of_at_most_ten_thousand_rows(s3, spec_dir):
    rows = io.StringIO()
    writer = csv.writer(rows)
    for i in range(2 * PART_ROWS + 1):
        writer.writerow([f"r{i}@example.net", f"Reader {i}", i + 1])
    (spec_dir / "many.csv").write_text(rows.getvalue())
    outcome = send(s3, write_spec(spec_dir, recipients="many.csv"))
    job, addresses = accepted(s3, outcome)
    assert [p.rows for p in job.parts] == [PART_ROWS, PART_ROWS, 1]
    assert job.recipients == outcome.recipients == 2 * PART_ROWS + 1
    assert addresses[2] == [f"r{2 * PART_ROWS}@example.net"]
    assert [p.key.rsplit("/", 1)[1] for p in job.parts] == [
        "part-00001.ndjson.gz", "part-00002.ndjson.gz", "part-00003.ndjson.gz"]


def test_no_good_recipient_makes_a_job_with_no_parts(s3, spec_dir):
    outcome = send(s3, write_spec(spec_dir, recipients=["x"]))
    job, _ = accepted(s3, outcome)
    assert (job.parts, job.recipients, len(outcome.skipped)) == ((), 0, 1)


# -- specs refused before anything is uploaded -------------------------------------------

BAD_SPECS = [
    ({"colour": "red"}, "unknown field(s) colour"),
    ({"recipients": None}, "recipients is a list or the path of a file"),
    ({"recipients": "missing.csv"}, "missing.csv does not exist"),
    ({"recipients": "new-post.json"}, "must end in .csv or .ndjson"),
    ({"template": {"subject": "Hi {{ name", "html": "<p>x</p>"}}, "template"),
    ({"template": {"html": "<p>x</p>"}}, "field template"),
    ({"meta": {"from": "Eve <eve@evil.org>"}}, "field meta.from"),
    ({"meta": {"from": "news@example.org", "cc": ["a@example.org"]}}, "field meta"),
    ({"context": []}, "field context"),
]


@pytest.mark.parametrize(
    "changes,message", BAD_SPECS,
    ids=["unknown-field", "recipients-null", "recipients-missing-file", "recipients-not-csv",
         "template-syntax", "no-subject", "sender-not-allowed", "cc", "context-not-object"],
)
def test_a_bad_spec_is_refused_naming_the_field_and_nothing_is_uploaded(
    s3, spec_dir, changes, message
):
    with pytest.raises((CommandError, PostbagError), match=re.escape(message)):
        send(s3, write_spec(spec_dir, **changes))
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_a_spec_without_recipients_or_not_json_is_refused(s3, spec_dir):
    (spec_dir / "broken.json").write_text("{")
    with pytest.raises(CommandError, match="broken.json is not JSON"):
        send(s3, spec_dir / "broken.json")
    (spec_dir / "none.json").write_text("{}")
    with pytest.raises(CommandError, match="field recipients is missing"):
        send(s3, spec_dir / "none.json")


def test_a_recipients_file_that_is_not_utf8_stops_before_the_manifest(s3, spec_dir):
    (spec_dir / "latin1.csv").write_bytes("zoe@example.net,Zoë\n".encode("latin-1"))
    with pytest.raises(CommandError, match="not UTF-8"):
        send(s3, write_spec(spec_dir, recipients="latin1.csv"))
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


# -- cancel and status ---------------------------------------------------------------------


def test_cancel_writes_the_marker_the_sender_looks_for(s3, spec_dir):
    send(s3, spec_dir / "new-post.json")
    key = jobs.cancel(s3, BUCKET, JOB)
    assert key == f"jobs/{JOB}/cancel"
    progress = JobProgress(boto3.client("dynamodb", region_name=REGION), "t", "n", s3)
    assert progress.cancelled(BUCKET, JOB)


def test_cancel_and_status_of_an_unknown_job_say_so(s3):
    with pytest.raises(CommandError, match=f"no job {JOB} in s3://{BUCKET}"):
        jobs.cancel(s3, BUCKET, JOB)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_table(dynamodb, SETTINGS.ledger_table)
    with pytest.raises(CommandError, match=f"no job {JOB}"):
        jobs.status(s3, dynamodb, SETTINGS, BUCKET, JOB)
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_status_follows_the_job_from_upload_to_split(s3, spec_dir):
    outcome = send(s3, spec_dir / "new-post.json")
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_table(dynamodb, SETTINGS.ledger_table)
    with pytest.raises(CommandError, match="has not started"):
        jobs.status(s3, dynamodb, SETTINGS, BUCKET, JOB)
    job = v2.parse_manifest(stored(s3, outcome.manifest_key), outcome.manifest_key, SETTINGS)
    progress = JobProgress(dynamodb, SETTINGS.ledger_table, SETTINGS.idempotency_namespace, s3)
    progress.begin(BUCKET, job, 1)
    document = jobs.status(s3, dynamodb, SETTINGS, BUCKET, JOB)
    assert (document["job_id"], document["state"], document["recipients"]) == (JOB, "queued", 3)


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", "-x", "a" * 65, "jobs/x/manifest.json"],
    ids=["empty", "dot-dot", "slash", "leading-hyphen", "too-long", "a-key"],
)
def test_job_ids_that_could_name_another_key_are_refused(bad):
    with pytest.raises(CommandError, match="is not a job id"):
        jobs.job_id(bad)


# -- the command line --------------------------------------------------------------------


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_notify_prints_the_job_id_and_cancel_stops_it(s3, spec_dir, capsys):
    stage = ["--stage", "dev", "--region", REGION, "--bucket", BUCKET,
             "--chalice-dir", str(chalice_config.CHALICE_DIR)]
    code, out, err = run(capsys, "notify", str(spec_dir / "new-post.json"), *stage)
    assert code == 0, err
    job_id = out.strip()
    assert jobs.job_id(job_id) == job_id
    assert "3 recipient(s) in 1 part(s), 4 row(s) skipped" in err
    assert "skipped recipients.csv:5:" in err
    code, out, err = run(capsys, "cancel", "--job", job_id, *stage)
    assert code == 0, err
    assert s3.head_object(Bucket=BUCKET, Key=f"jobs/{job_id}/cancel")
    code, out, err = run(capsys, "cancel", "--job", JOB, *stage)
    assert (code, out) == (1, "") and f"no job {JOB}" in err


def test_notify_refuses_a_sender_the_stage_may_not_use(s3, spec_dir, capsys):
    spec = write_spec(spec_dir, meta={"from": "ceo@elsewhere.org"})
    code, out, err = run(capsys, "notify", str(spec), "--stage", "dev", "--region", REGION,
                         "--bucket", BUCKET)
    assert (code, out) == (1, "")
    assert "field meta.from" in err
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
