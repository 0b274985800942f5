"""The hostile-input table (tests/support/hostile.py) through the real handler, against moto.

Each case asserts its refusal by name (quarantined with field and reason, or
the one mail failed with field and reason while the sound one went out), that
the handler returned normally, and that no message SES was handed carries a
recipient or a header the sound batch would not have. ``bench/hostile.py``
prints the same table's counts per category.
"""

from __future__ import annotations

import os

import pytest
from moto import mock_aws
from support.hostile import cases, run
from support.safe_env import prepare_sender_aws

import app

BUCKET = os.environ["POSTBAG_BUCKET"]
CASES = cases()


@pytest.fixture(scope="module")
def aws():
    # One mock for the whole table: each case has its own batch id and keys.
    with mock_aws():
        yield prepare_sender_aws(app)
        app.stages.cache_clear()


def test_the_table_is_large_and_covers_every_category():
    assert len(CASES) >= 200
    assert {c.category for c in CASES} >= {
        "header injection", "reserved header", "attachment", "envelope", "mail", "charset",
        "sender", "size",
    }


@pytest.mark.parametrize("index, case", list(enumerate(CASES)), ids=[c.id for c in CASES])
def test_hostile_input_is_refused_by_name(aws, index, case):
    result = run(case, index, aws, BUCKET)
    assert result.ok, f"{case.id} ({case.expected}): {result.problems}"
