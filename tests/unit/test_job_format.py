"""Part files of notify jobs: rows read in ranges, bad rows failing alone, bad gzip named."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from conftest import fixture_bytes
from support.bad_jobs import BAD_ROWS, EXAMPLE_JOB, MANIFEST_KEY

from chalicelib.errors import BatchFormatError
from chalicelib.formats import parse_batch
from chalicelib.formats.v2 import MAX_PART_INFLATED, count_rows, read_rows

PART = "jobs/x/part-00001.ndjson.gz"


def _row(i: int) -> bytes:
    return json.dumps({"email": f"r{i}@example.net", "user_id": i + 1}).encode()


def _part(lines: list[bytes], end: bytes = b"\n") -> bytes:
    return gzip.compress(b"\n".join(lines) + end)


def test_rows_of_the_example_part():
    data = fixture_bytes(EXAMPLE_JOB + "part-00001.ndjson.gz")
    rows, bad = read_rows(data, 0, 0, 3, PART)
    assert bad == []
    zoe, bob, chen = rows
    assert (zoe.row, zoe.email, zoe.name, zoe.user_id) == (0, "zoe@example.net", "Zoë Durand", 12)
    assert zoe.vars == {"new_followers": ["Ana", "Bo"]}
    assert (bob.name, bob.vars) == ("", {})
    assert chen.name == "陈伟"


def test_a_range_is_read_and_nothing_else():
    lines = [_row(i) for i in range(1000)]
    rows, bad = read_rows(_part(lines), 3, 500, 510, PART)
    assert [r.row for r in rows] == list(range(500, 510))
    assert rows[0].email == "r500@example.net" and bad == []


def test_lines_outside_the_range_are_not_parsed():
    # Bad JSON before and after the range: parsed, each would be reported.
    lines = [b"not json"] * 400 + [_row(i) for i in range(400, 410)] + [b"{bad"] * 400
    rows, bad = read_rows(_part(lines), 0, 400, 410, PART)
    assert len(rows) == 10 and bad == []


def test_inflating_stops_at_the_end_of_the_range():
    # The stream is cut off halfway: the rows before the cut read all the same.
    whole = _part([_row(i) for i in range(20_000)])
    rows, bad = read_rows(whole[: len(whole) // 2], 0, 0, 500, PART)
    assert len(rows) == 500 and bad == []


def test_a_range_past_the_last_row_gives_what_is_there():
    rows, bad = read_rows(_part([_row(0), _row(1)]), 0, 1, 500, PART)
    assert [r.row for r in rows] == [1] and bad == []


def test_a_last_line_without_newline_is_a_row():
    data = _part([_row(0), _row(1)], end=b"")
    assert count_rows(data, 0, PART) == 2
    assert len(read_rows(data, 0, 0, 5, PART)[0]) == 2


def test_count_rows_takes_the_body_in_chunks():
    data = _part([_row(i) for i in range(3000)])
    chunks = [data[i:i + 7] for i in range(0, len(data), 7)]
    assert count_rows(chunks, 0, PART) == 3000


def test_several_gzip_members_read_as_one_text():
    data = gzip.compress(_row(0) + b"\n") + gzip.compress(_row(1) + b"\n" + _row(2) + b"\n")
    assert count_rows(data, 0, PART) == 3
    assert [r.email for r in read_rows(data, 0, 0, 3, PART)[0]] == [
        "r0@example.net", "r1@example.net", "r2@example.net"
    ]


def test_idn_domain_is_encoded_and_case_kept_in_the_local_part():
    data = _part([json.dumps({"email": "Zoë.Fan@Bücher.Example"}).encode()])
    rows, bad = read_rows(data, 0, 0, 1, PART)
    assert bad == [(0, "field email: malformed address 'Zoë.Fan@Bücher.Example'")]
    data = _part([json.dumps({"email": "Zoe.Fan@Bücher.Example"}).encode()])
    (row,), bad = read_rows(data, 0, 0, 1, PART)
    assert row.email == "Zoe.Fan@xn--bcher-kva.example" and bad == []


@pytest.mark.parametrize("name, line, field, reason", BAD_ROWS, ids=[r[0] for r in BAD_ROWS])
def test_bad_row_fails_alone(name, line, field, reason):
    rows, bad = read_rows(_part([_row(0), line, _row(2)]), 0, 0, 3, PART)
    assert [r.row for r in rows] == [0, 2]
    ((row, why),) = bad
    assert row == 1
    assert why.startswith(f"field {field}: ")
    assert reason in why


CORRUPT = [
    ("not-gzip", b"plain text, never compressed\n", "not gzip, or corrupt"),
    ("truncated", _part([_row(0), _row(1)])[:-12], "truncated"),
    ("empty", b"", "truncated"),
    ("bad-crc", _part([_row(0)])[:-8] + b"\0\0\0\0" + _part([_row(0)])[-4:],
     "not gzip, or corrupt"),
    ("trailing-garbage", _part([_row(0)]) + b"garbage", "not gzip, or corrupt"),
]


@pytest.mark.parametrize("name, data, reason", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_part_is_named(name, data, reason):
    for read in (lambda: count_rows(data, 4, PART), lambda: read_rows(data, 4, 0, 100, PART)):
        with pytest.raises(BatchFormatError) as caught:
            read()
        assert caught.value.field == "parts[4]"
        assert reason in caught.value.reason
        assert PART in str(caught.value)


def test_a_gzip_bomb_is_cut_off():
    step = b"\n" * (1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(packer.compress(step) for _ in range(MAX_PART_INFLATED // len(step) + 1))
    bomb += packer.flush()
    assert len(bomb) < 1 << 20, "a bomb: small stored, huge inflated"
    with pytest.raises(BatchFormatError) as caught:
        count_rows(bomb, 0, PART)
    assert "inflates to more than 268,435,456 bytes" in caught.value.reason
    rows, bad = read_rows(bomb, 0, 0, 10, PART)  # the start of it reads, as blank rows
    assert rows == [] and [row for row, _ in bad] == list(range(10))


def test_a_job_manifest_under_the_queue_is_refused_with_where_it_belongs(settings):
    data = fixture_bytes("jobs/new-post/" + MANIFEST_KEY)
    with pytest.raises(BatchFormatError) as caught:
        parse_batch(data, "queue/manifest.json", settings)
    assert caught.value.field == "version"
    assert "a version-2 notify job belongs at jobs/<id>/manifest.json" in caught.value.reason


def test_ranges_across_the_inflated_pieces_read_the_right_rows():
    # ~1.9 MB inflated: the inflater hands it over in several pieces.
    lines = [_row(i) for i in range(40_000)]
    data = _part(lines)
    for start in (0, 1, 23_000, 23_301, 29_999, 39_990):
        rows, bad = read_rows(data, 0, start, start + 10, PART)
        assert [r.email for r in rows] == [
            f"r{i}@example.net" for i in range(start, min(start + 10, 40_000))
        ], start
        assert bad == []


# Addresses the fast path takes and addresses it leaves to email.utils: both give what
# fields.address gives, or both refuse.
ADDRESSES = [
    "a@example.net", "First.Last@Example.NET", "o'neil+tag@sub.example.org",
    "x!#$%&'*/=?^_`{|}~-y@example.net", "a@xn--bcher-kva.example", "1@2.3",
    "a@" + "b" * 63 + ".example", "a@" + "b" * 64 + ".example", ".a@example.net",
    "a.@example.net", "a..b@example.net", "a@-example.net", "a@example-.net",
    "a@example", "a@example..net", "\"quoted\"@example.net", "a@bücher.example",
    "a b@example.net", "a@example.net.", "a@[127.0.0.1]",
]


@pytest.mark.parametrize("value", ADDRESSES)
def test_the_fast_bare_address_path_agrees_with_the_full_parse(value):
    from chalicelib.fields import address, bare_address

    try:
        name, expected = address(value, "email", "job", "row 0")
        assert name == ""
    except BatchFormatError:
        expected = None
    try:
        got = bare_address(value, "email", "job", "row 0")
    except BatchFormatError:
        got = None
    assert got == expected


def test_inline_rows_parse_like_stored_ones():
    from chalicelib.formats.v2 import parse_rows

    rows, bad = parse_rows([_row(7), b"{nope", _row(9)], 7, "re-drive")
    assert [(r.row, r.email) for r in rows] == [(7, "r7@example.net"), (9, "r9@example.net")]
    assert [row for row, _ in bad] == [8]
