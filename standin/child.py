"""A stand-in server in a child process, known by the ``<endpoint> <pid>`` line it prints.

The child prints that line on stdout once it listens, and nothing after it (the pipe
is not read again, so more output could fill it and block the child). Its stderr is
the caller's, so a child that fails to start says why.
"""

from __future__ import annotations

import select
import subprocess
from typing import Self

from standin.aws import REPO_ROOT, stop_process


class ChildServer:
    """``command`` run from the repository's root until stopped; a context manager that
    always stops it (by its PID), also when it does not start within ``startup_timeout``."""

    def __init__(self, command: list[str], startup_timeout: float = 30.0):
        self._command = command
        self._timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Self:
        # From the repository's root, which ``-m`` puts on the path: standin is not installed.
        self._process = process = subprocess.Popen(self._command, cwd=REPO_ROOT,
                                                   stdout=subprocess.PIPE)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], self._timeout)
        line = process.stdout.readline().decode() if ready else ""
        if not line:  # it exited (its error is on stderr) or never listened
            self.stop()
            raise RuntimeError(f"no '<endpoint> <pid>' line within {self._timeout:g} s "
                               f"(if it exited, its error is above): {' '.join(self._command)}")
        self.endpoint = line.split()[0]
        return self

    def stop(self) -> None:
        stop_process(self._process)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
