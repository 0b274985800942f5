"""What ``support.clock`` reads from event times: the pace bench/fanout.py's e2e reports."""

from __future__ import annotations

import pytest
from support.clock import pauses, per_full_second


def test_each_whole_second_between_the_first_and_the_last_is_counted():
    # Second 10 (first, partial): 10.5, 10.9. 11: three. 12: none. 13: one. 14 (last): 14.0.
    times = [11.2, 10.5, 13.1, 11.0, 10.9, 11.99, 14.0]
    assert per_full_second(times) == [3, 0, 1]


@pytest.mark.parametrize("times", [[], [5.5], [5.1, 5.9], [5.9, 6.1]],
                         ids=["none", "one", "one-second", "two-neighbouring-seconds"])
def test_no_whole_second_without_one_between_the_first_and_the_last(times):
    assert per_full_second(times) == []


def test_pauses_are_the_gaps_over_the_bound_in_time_order():
    times = [2.0, 1.0, 1.05, 1.3, 1.35, 2.08]
    assert pauses(times, 0.1) == pytest.approx([0.25, 0.65])
    assert pauses(times, 1.0) == []
