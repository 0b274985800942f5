"""send_at, send_between and reschedule requests read and checked; windows planned (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.control import Request
from chalicelib.errors import BatchFormatError
from chalicelib.hold import Marker
from chalicelib.schedule import Window, parse_reschedule, parse_when, plan_window

NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parents[2] / "fixtures" / "schedule"


def _at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


@pytest.mark.parametrize("doc, utc", [
    ({"send_at": "2026-12-01T09:00:00+01:00"}, {"send_at": "2026-12-01T08:00:00Z"}),
    ({"send_at": "2027-06-01T09:00:00+02:00"}, None),  # beyond 90 days: refused below
    ({"send_between": {"start": "2026-12-01T08:00:00-05:00", "end": "2026-12-01T14:00:00Z"}},
     {"send_between": {"start": "2026-12-01T13:00:00Z", "end": "2026-12-01T14:00:00Z"}}),
    ({}, {"send_at": None, "send_between": None}),
], ids=["offset", "summer-too-far", "window-offset", "neither"])
def test_times_are_stored_in_utc(doc, utc):
    if utc is None:
        with pytest.raises(BatchFormatError):
            parse_when(doc, "b1", NOW)
        return
    document = parse_when(doc, "b1", NOW).document()
    assert {name: document[name] for name in utc} == utc


BAD = [
    ("both", {"send_at": "2026-12-01T08:00:00Z",
              "send_between": {"start": "2026-12-01T08:00:00Z", "end": "2026-12-01T09:00:00Z"}},
     "send_between", "exclude each other"),
    ("reversed", {"send_between": {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T08:00:00Z"}},
     "send_between.end", "is not after the start"),
    ("empty", {"send_between": {"start": "2026-12-01T09:00:00Z",
                                "end": "2026-12-01T10:00:00+01:00"}},
     "send_between.end", "is not after the start"),
    ("too-far", {"send_at": "2027-03-01T07:00:01Z"}, "send_at", "more than 90 days ahead"),
    ("window-ends-too-far", {"send_between": {"start": "2026-12-01T09:00:00Z",
                                              "end": "2027-03-02T00:00:00Z"}},
     "send_between.end", "more than 90 days ahead"),
    ("no-zone", {"send_at": "2026-12-01T08:00:00"}, "send_at", "no time zone"),
    ("not-a-date", {"send_at": "2026-02-30T08:00:00Z"}, "send_at", "not a time"),
    ("start-not-a-date", {"send_between": {"start": "2026-13-01T08:00:00Z",
                                           "end": "2026-12-01T09:00:00Z"}},
     "send_between.start", "not a time"),
]


@pytest.mark.parametrize("doc, field, reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_times_name_the_field(doc, field, reason):
    with pytest.raises(BatchFormatError) as caught:
        parse_when(doc, "b1", NOW)
    assert caught.value.field == field
    assert reason in str(caught.value)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("good-*.json")), ids=lambda p: p.stem)
def test_good_reschedule_requests_are_read(path):
    parse_reschedule(path.read_bytes(), "control/batches/b1/schedule.json", NOW)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("bad-*.json")), ids=lambda p: p.stem)
def test_bad_reschedule_requests_name_the_field(path):
    case = json.loads(path.read_text())
    with pytest.raises(BatchFormatError) as caught:
        parse_reschedule(json.dumps(case["request"]).encode(), "jobs/j1/schedule.json", NOW)
    assert caught.value.field == case["field"]


def test_a_window_that_fits_gives_every_minute_its_share_and_ends_before_the_end():
    plan = plan_window(6000, Window(_at(1), _at(2)), NOW, rate=14.0, quota_left=None,
                       max_chunk_rows=500)
    assert (plan.fits, plan.chunk_rows, plan.chunks, plan.slots) == (True, 100, 60, 60)
    last_minute = plan.start + timedelta(minutes=plan.slots - 1)
    assert last_minute + timedelta(seconds=plan.chunk_rows / 14.0) <= _at(2)
    assert plan.due_chunks(_at(1) - timedelta(seconds=1)) == 0
    assert plan.due_chunks(_at(1)) == 1
    assert plan.due_chunks(_at(2)) == 60


def test_a_minutes_share_above_the_chunk_cap_is_cut_into_equal_chunks():
    # 3,334 a minute with a cap of 500: seven chunks of 477 a minute, not 500s and a rest.
    plan = plan_window(100_000, Window(_at(1), _at(1.5)), NOW, rate=100.0, quota_left=None,
                       max_chunk_rows=500)
    assert plan.fits and plan.chunk_rows == 477 and plan.chunks == 210
    per_minute = [plan.due_chunks(_at(1) + timedelta(minutes=m, seconds=59))
                  - plan.due_chunks(_at(1) + timedelta(minutes=m - 1, seconds=59))
                  for m in range(1, 29)]
    assert set(per_minute) <= {7, 8}, per_minute


@pytest.mark.parametrize("rate, quota_left, available", [
    (1.0, None, 1.0),  # the rate: 3,600 an hour for 6,000
    (100.0, 3000.0, 3000 / 3600),  # the quota left over the window
], ids=["rate", "quota"])
def test_a_window_that_cannot_hold_the_job_says_so_and_sends_at_once(rate, quota_left, available):
    plan = plan_window(6000, Window(_at(1), _at(2)), NOW, rate, quota_left, 500)
    assert not plan.fits
    assert plan.available_rate == pytest.approx(available)
    assert plan.needed_rate == pytest.approx(6000 / 3600)
    assert plan.due_chunks(_at(1)) == plan.chunks


def test_a_window_begun_already_is_planned_over_what_is_left():
    plan = plan_window(600, Window(_at(-1), _at(0.5)), NOW, 14.0, None, 500)
    assert plan.start == NOW and plan.needed_rate == pytest.approx(600 / 1800)


@pytest.mark.parametrize("key", [
    "held/2026-12-01T08:00:00Z/batch", "held/2026-12-01/batch/b1", "held/x/job/j1",
    "queue/2026-12-01T08:00:00Z/batch/b1", "held/2026-12-01T08:00:00Z/mail/m1",
], ids=["short", "no-time", "not-a-time", "other-prefix", "other-kind"])
def test_keys_that_are_not_markers_are_ignored(key):
    assert Marker.parse(key) is None


@pytest.mark.parametrize("key, expected", [
    ("control/batches/b-1/cancel", ("batch", "b-1", "cancel")),
    ("control/batches/b-1/schedule.json", ("batch", "b-1", "schedule")),
    ("jobs/j.1/schedule.json", ("job", "j.1", "schedule")),
    ("jobs/j.1/cancel", ("job", "j.1", "cancel")),
    ("jobs/j.1/manifest.json", None),
    ("control/batches/b-1/other", None),
    ("control/batches/../cancel", None),
    ("control/batches/a/b/cancel", None),
    ("control/batches//cancel", None),
], ids=["batch-cancel", "batch-schedule", "job-schedule", "job-cancel", "manifest",
        "other-name", "dot-dot", "nested", "empty-id"])
def test_request_keys_name_a_kind_an_id_and_an_action(key, expected):
    request = Request.parse(key)
    assert (None if request is None else (request.kind, request.ident, request.action)) \
        == expected
