"""The notify-job contract the plugin and the sender share: every example job under
``fixtures/jobs/`` is valid and self-consistent, and every bad manifest is refused with
the field and the reason."""

from __future__ import annotations

import gzip
import hashlib
import json

import fastjsonschema
import pytest
from conftest import FIXTURES, fixture_bytes
from support.bad_jobs import BAD_MANIFESTS, MANIFEST_KEY

from chalicelib.formats.v2 import count_rows, parse_manifest, read_rows

MANIFESTS = sorted(
    path for path in FIXTURES.glob("jobs/*/jobs/*/manifest.json") if "bad" not in path.parts
)
IDS = [str(path.relative_to(FIXTURES / "jobs")) for path in MANIFESTS]


def _bucket_key(path) -> str:
    """The key a fixture stands for: its path below the example's bucket folder."""
    parts = path.relative_to(FIXTURES / "jobs").parts
    return "/".join(parts[1:])


def _local_schema(uri: str):
    # The schemas' https $ids name the files beside them: never fetched.
    return json.loads((FIXTURES / uri.rpartition("/")[2]).read_text("utf-8"))


def test_there_is_an_example_job():
    assert MANIFESTS, "fixtures/jobs/<example>/jobs/<job_id>/manifest.json"


@pytest.mark.parametrize("path", MANIFESTS, ids=IDS)
def test_example_manifest_validates_against_the_published_schema(path):
    schema = json.loads((FIXTURES / "job-v2.schema.json").read_text("utf-8"))
    validate = fastjsonschema.compile(schema, handlers={"https": _local_schema})
    validate(json.loads(path.read_bytes()))


@pytest.mark.parametrize("path", MANIFESTS, ids=IDS)
def test_example_job_parses_and_its_parts_match(settings, path):
    job = parse_manifest(path.read_bytes(), _bucket_key(path), settings)
    bucket = path.parents[2]  # the example's bucket folder
    assert sum(part.rows for part in job.parts) == job.recipients
    for index, part in enumerate(job.parts):
        stored = (bucket / part.key).read_bytes()
        assert len(stored) == part.bytes, part.key
        assert hashlib.sha256(stored).hexdigest() == part.sha256, part.key
        readable = (bucket / part.key.removesuffix(".gz")).read_bytes()
        assert gzip.decompress(stored) == readable, "the .ndjson copy is the part, inflated"
        assert count_rows(stored, index, part.key) == part.rows
        rows, bad = read_rows(stored, index, 0, part.rows, part.key)
        assert bad == [] and [r.row for r in rows] == list(range(part.rows))


def test_the_example_job_as_the_sender_reads_it(settings):
    path = FIXTURES / "jobs/new-post" / MANIFEST_KEY
    job = parse_manifest(path.read_bytes(), MANIFEST_KEY, settings)
    assert job.meta.sender == ("Blog", "news@example.org")
    assert job.meta.reply_to == (("Editors", "editors@example.org"),)
    assert job.meta.headers == (("X-Postbag-Campaign", "new-post 42"),)
    assert job.meta.tags == (("source", "new-post"), ("postbag-job", job.job_id),
                             ("postbag-list", "new-posts")), "the job and its list for SES's events"
    assert job.meta.configuration_set == "postbag"
    assert (job.list_name, job.send_at) == ("new-posts", None)
    assert job.context["post"]["title"] == "Café culture & <tags>"


@pytest.mark.parametrize(
    "name, error, field, reason", BAD_MANIFESTS, ids=[row[0] for row in BAD_MANIFESTS]
)
def test_bad_manifest_is_refused_whole(settings, name, error, field, reason):
    with pytest.raises(error) as caught:
        parse_manifest(fixture_bytes(f"jobs/bad/{name}.json"), MANIFEST_KEY, settings)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert MANIFEST_KEY in str(caught.value), "the error names the manifest"


def test_every_bad_manifest_fixture_is_in_the_table():
    on_disk = {path.stem for path in (FIXTURES / "jobs/bad").glob("*.json")}
    assert on_disk == {row[0] for row in BAD_MANIFESTS}
