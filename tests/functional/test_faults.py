"""The fault suite: 500 mails under each fault, each accepted by SES exactly once.

The scenarios are in ``tests/support/faults.py``; ``bench/faults.py`` prints them as a table.
"""

from __future__ import annotations

import pytest
from support.faults import SCENARIOS

MAILS = 500


@pytest.mark.server
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_each_mail_once_whatever_fails(scenario):
    row = scenario(MAILS)
    assert (row.duplicates, row.lost) == (0, 0), row
    assert row.accepted == MAILS
