"""A local stand-in for AWS: moto's server in its own process on 127.0.0.1.

Used by ``make demo``, the Python tests and (through ``python -m
standin.aws``) the PHP tests. It is stopped by its PID, and nothing it
does leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any
from urllib.error import URLError

HOST = "127.0.0.1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Dummy credentials: the stand-in accepts any, unless signature checking is on.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[Any] | None) -> None:
    """Stop a child server by its PID (SIGTERM, SIGKILL after 10 s) and wait for it."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def stop_by_stdin(process: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """Stop a launcher that serves until its stdin closes (``standin/wordpress-site.php``,
    ``tests/browser/launch-site.php``): close it, and if the launcher still runs after
    ``grace_s``, ``stop_process`` it (its SIGTERM handler stops what it started too). A
    SIGKILL leaves its MariaDB, PHP-FPM and nginx running: say so."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        stop_process(process)
        if process.returncode == -signal.SIGKILL:
            print(f"launcher {process.pid} killed: its MariaDB, PHP-FPM and nginx may be "
                  "left running", file=sys.stderr)


class LocalAws:
    """moto's server as a child process; a context manager that always stops it.

    ``check_signatures`` makes the server verify SigV4 signatures (moto checks
    only once ``INITIAL_NO_AUTH_ACTION_COUNT`` unsigned calls have been made).
    ``ses_quota`` (mails a day, mails a second) is what
    ``GetSendQuota`` answers instead of moto's sandbox quota;
    ``reserved_concurrency`` what ``GetFunctionConcurrency`` answers.
    """

    def __init__(self, check_signatures: bool = False, startup_timeout: float = 30.0,
                 ses_quota: tuple[float, float] | None = None, reserved_concurrency: int = 0):
        self.port = free_port()
        self.endpoint = f"http://{HOST}:{self.port}"
        self._check_signatures = check_signatures
        self._ses_quota = ses_quota
        self._reserved_concurrency = reserved_concurrency
        self._timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _command(self) -> list[str]:
        quota = ["--ses-quota", ",".join(map(str, self._ses_quota))] if self._ses_quota else []
        return [sys.executable, "-m", "standin.server", HOST, str(self.port), *quota,
                "--reserved-concurrency", str(self._reserved_concurrency)]

    def start(self) -> LocalAws:
        env = dict(os.environ)
        # The stand-in is not installed: a wrapper script run by path imports it from here.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (REPO_ROOT, env.get("PYTHONPATH"))))
        if self._check_signatures:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self._process = subprocess.Popen(
            self._command(),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/data.json", timeout=1).close()
                return
            except (URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint}")

    def stop(self) -> None:
        stop_process(self._process)

    def client_env(self) -> dict[str, str]:
        """Environment for a process (or boto3) that should talk to the stand-in."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def sender_env(self, bucket: str, function_name: str, **overrides: str) -> dict[str, str]:
        """Environment for running the sender's handler in-process against the stand-in.

        Mail from example.org is allowed; the handler's JSON logs and metrics are
        off, since the caller prints its own results. ``overrides`` add or replace
        variables (e.g. ``POSTBAG_MAX_SEND_RATE="50"``).
        """
        return {
            **self.client_env(),
            "POSTBAG_BUCKET": bucket,
            "POSTBAG_ALLOWED_SENDERS": "example.org",
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            "POWERTOOLS_METRICS_DISABLED": "true",
            **overrides,
        }

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main() -> None:
    """Run the stand-in in the foreground: prints ``<endpoint> <pid>`` once it answers.

    For tests in other languages, which stop it by that PID.
    """
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--check-signatures", action="store_true")
    args = parser.parse_args()
    server = LocalAws(check_signatures=args.check_signatures).start()
    print(server.endpoint, server.pid, flush=True)

    def stop(*_: object) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while server._process.poll() is None:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
