"""Settings the sender refuses to start with, naming the variable."""

from __future__ import annotations

import pytest

from chalicelib.config import Settings
from chalicelib.errors import ConfigurationError

BAD = [
    ({"POSTBAG_SOFT_BOUNCE_LIMIT": "0"}, "POSTBAG_SOFT_BOUNCE_LIMIT"),
    ({"POSTBAG_SOFT_BOUNCE_LIMIT": "-2"}, "POSTBAG_SOFT_BOUNCE_LIMIT"),
    ({"POSTBAG_SOFT_BOUNCE_DAYS": "0"}, "POSTBAG_SOFT_BOUNCE_DAYS"),
]


@pytest.mark.parametrize(("env", "name"), BAD, ids=["limit-0", "limit-negative", "days-0"])
def test_a_soft_bounce_threshold_that_would_suppress_at_once_is_refused(env, name):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env)


def test_the_default_threshold_is_three_in_seven_days():
    settings = Settings.from_env({})
    assert (settings.soft_bounce_limit, settings.soft_bounce_days) == (3, 7.0)
