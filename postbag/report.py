"""What a command did to each resource, printed as it goes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from botocore.exceptions import ClientError

from postbag.aws import error_code

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
DELETED, ABSENT = "deleted", "absent"


class Report:
    def __init__(self, out: TextIO | None = None):
        self.out = out if out is not None else sys.stderr

    def add(self, what: str, action: str) -> None:
        print(f"  {action:<9} {what}", file=self.out)

    def note(self, text: str) -> None:
        """A finding that changes nothing (a check's result, a warning), on a line of its own."""
        print(text, file=self.out)

    def converge(
        self,
        what: str,
        current: Callable[[], Any],
        desired: Any,
        apply: Callable[[], Any],
        missing: Iterable[str] = (),
    ) -> None:
        """Apply ``desired`` only when ``current()`` differs; ``missing`` codes mean "none yet"."""
        try:
            now = current()
        except ClientError as exc:
            if error_code(exc) not in set(missing):
                raise
            now = None
        if now == desired:
            self.add(what, UNCHANGED)
            return
        apply()
        self.add(what, CREATED if now is None else UPDATED)
