"""What the browser tests drive: the site launch-site.php started, the local
sender, and a wait helper (the fixtures are in conftest.py)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The verified sending domain; mail from any other domain is refused by SES.
VERIFIED_DOMAIN = "example.org"
# Allowed on both sides but no SES identity: its mail fails until a test verifies it.
UNVERIFIED_DOMAIN = "unverified.example"

@dataclass
class Site:
    """What launch-site.php printed."""

    url: str
    host: str
    user: str
    password: str
    endpoint: str
    bucket: str
    spool: str
    db_socket: str
    php_errors: str
    pids: dict[str, int]

    def admin(self, path: str = "") -> str:
        """A wp-admin URL under the site's own host name (the browser maps it)."""
        return f"http://{self.host}/wp-admin/{path}"

    def page(self, path: str) -> str:
        return f"http://{self.host}/{path}"

    def sql(self, statement: str) -> str:
        """Runs one statement on the site's database (what a minute or a cron run would do)."""
        return subprocess.run(
            ["mariadb", f"--socket={self.db_socket}", "-uroot", "wordpress", "-N", "-e", statement],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline() if ready else ""


class Sender:
    """The Lambda's S3 handlers delivered every new object their notification matches
    (batches under ``queue/``, ...), in a thread."""

    def __init__(self, site: Site):
        sys.path.insert(0, str(ROOT / "chalice_app"))
        from standin.aws import CREDENTIALS

        os.environ.update({
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": site.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "POSTBAG_BUCKET": site.bucket,
            "POSTBAG_ALLOWED_SENDERS": f"{VERIFIED_DOMAIN},{UNVERIFIED_DOMAIN}",
            "POSTBAG_LEDGER_TABLE": "postbag-browser-ledger",
            "AWS_LAMBDA_FUNCTION_NAME": "postbag-browser-on_batch_uploaded",
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            "POWERTOOLS_METRICS_DISABLED": "true",
        })
        import boto3

        from chalicelib.ledger import create_table

        self.ses = boto3.client("ses")
        self.ses.verify_domain_identity(Domain=VERIFIED_DOMAIN)
        create_table(boto3.client("dynamodb"), os.environ["POSTBAG_LEDGER_TABLE"])
        create_table(boto3.client("dynamodb"), "postbag-suppression")  # the sender's default
        import app  # after the environment: app.py reads its settings at import
        from standin.lambda_runtime import LocalDispatcher, app_routes

        # Every S3 notification the app declares, as S3 would deliver them.
        routes = app_routes(app)
        self._routes = routes
        self._s3 = boto3.client("s3")
        self._bucket = site.bucket
        self._dispatcher = LocalDispatcher(self._s3, site.bucket, routes)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)

    def keys(self, prefix: str) -> list[str]:
        """The bucket's keys under ``prefix`` (for failure messages)."""
        listing = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=prefix)
        return [obj["Key"] for obj in listing.get("Contents", [])]

    def body(self, key: str) -> bytes:
        """The body of one object of the bucket."""
        body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        return body

    def handles(self, key: str) -> bool:
        """Whether any of the app's S3 notifications would deliver ``key``."""
        return any(key.startswith(r.prefix) and key.endswith(r.suffix) for r in self._routes)

    def verify(self, domain: str) -> None:
        """Fixes the cause of a refused From: its domain becomes a verified identity."""
        self.ses.verify_domain_identity(Domain=domain)

    def _pump(self) -> None:
        while not self._stop.is_set():
            try:
                self.errors += [f"{d.key}: {d.error}" for d in self._dispatcher.run() if d.error]
            except Exception as exc:  # noqa: BLE001 - the stand-in stopped (the last test does)
                self.errors.append(f"dispatcher: {type(exc).__name__}: {exc}")
                return
            self._stop.wait(0.5)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)



def wait_for(predicate: Any, timeout: float, interval: float = 0.5) -> Any:
    """Polls ``predicate`` until it returns something truthy; its last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
