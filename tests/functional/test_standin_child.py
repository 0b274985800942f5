"""``standin.child.ChildServer``: a child that never says it listens is reported and stopped.
(One that starts: the fake SES's tests.)"""

from __future__ import annotations

import os
import sys

import pytest

from standin.child import ChildServer


@pytest.mark.parametrize("code", ["raise SystemExit(3)", "import time; time.sleep(60)"],
                         ids=["exits", "never-listens"])
def test_a_child_that_does_not_start_raises_and_is_stopped(code):
    child = ChildServer([sys.executable, "-c", code], startup_timeout=1)
    with pytest.raises(RuntimeError, match="no '<endpoint> <pid>' line within 1 s"):
        child.start()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)  # stopped and waited for
