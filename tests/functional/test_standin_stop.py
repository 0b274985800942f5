"""``standin.aws.stop_by_stdin``: a launcher stops when its stdin closes, or else by
SIGTERM once the grace is over (the PHP launchers: ``standin/wordpress-site.php``)."""

from __future__ import annotations

import signal
import subprocess
import sys

from standin.aws import stop_by_stdin


def launcher(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)


def test_a_launcher_stops_when_its_stdin_closes():
    process = launcher("import sys; sys.stdin.read()")
    stop_by_stdin(process, grace_s=10)
    assert process.returncode == 0


def test_a_launcher_still_running_after_the_grace_gets_a_sigterm():
    process = launcher("import time; time.sleep(60)")
    stop_by_stdin(process, grace_s=0.1)
    assert process.returncode == -signal.SIGTERM
