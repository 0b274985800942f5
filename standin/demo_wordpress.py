"""make demo through WordPress: a real site's request, then what the sender made of it.

``standin/wordpress-site.php`` starts Debian's WordPress with the plugin (the PHP
tests' harness: a throwaway MariaDB, PHP-FPM, nginx on 127.0.0.1) with
``JOB_RECIPIENTS`` subscribers, its plugin uploading to a bucket of its own on the
demo's stand-in. One GET of its page (``tests/php/integration/requests/demo-send.php``)
sends ``MAILS`` mails through ``wp_mail()`` and one ``postbag_notify()`` job to
every subscriber; the page answers before anything is uploaded (PHP-FPM's
``fastcgi_finish_request()``), which is the response time printed. Then the
uploads' S3 events go to the sender's handlers (the batch to
``on_batch_uploaded``, the manifest to ``on_job_uploaded``, the work items to
``on_work_item`` in worker processes), and the demo prints each mail of the batch
with its status and SES message id from its receipt, the job's status and a few
of its rendered mails. The site is stopped by PID on the way out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from standin.aws import LocalAws
from standin.job_run import JobRun, run_uploaded
from standin.lambda_runtime import LocalDispatcher, LocalSesEvents, Route

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "standin" / "wordpress-site.php"
BUCKET = "postbag-demo-site"
MAILS = 3
JOB_RECIPIENTS = 1000
JOB_CONCURRENCY = 4
MAILS_SHOWN = 2
# Starting MariaDB, installing WordPress, making the subscribers; then the uploads.
START_TIMEOUT_S, UPLOAD_TIMEOUT_S = 180.0, 60.0


class Site:
    """The launcher's process and what it printed; stopped by its PID."""

    def __init__(self, endpoint: str, log: Path):
        env = {**os.environ, "POSTBAG_DEMO_ENDPOINT": endpoint, "POSTBAG_DEMO_BUCKET": BUCKET}
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("w")
        self.process = subprocess.Popen(
            ["php", str(LAUNCHER), f"--users={JOB_RECIPIENTS}"], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the launcher prints once the site answers
        if not line:
            self.stop()
            raise RuntimeError(f"WordPress did not start: see {log}")
        self.info: dict[str, Any] = json.loads(line)

    def get(self, query: str) -> tuple[dict[str, Any], float]:
        """The page's answer and how long it took (seconds), as a browser would wait."""
        request = urllib.request.Request(f"{self.info['url']}{self.info['page']}?{query}",
                                         headers={"Host": "blog.example.org"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = answer.read()
        return json.loads(body), time.perf_counter() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: it stops MariaDB, PHP-FPM and nginx by PID
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _wait_for(s3: Any, key: str) -> None:
    deadline = time.time() + UPLOAD_TIMEOUT_S
    while time.time() < deadline:
        if s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the site never uploaded {key}")


def _batch_table(s3: Any, app: Any) -> bool:
    """The site's batch sent; each mail with its status and SES message id. True when all
    went out."""
    LocalDispatcher(s3, BUCKET, [Route("queue/", ".json", app.on_batch_uploaded)]).run()
    rows = []
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="receipts/").get("Contents", []):
        receipt = json.loads(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
        batch = json.loads(s3.get_object(Bucket=BUCKET, Key=receipt["batch"])["Body"].read())
        mails = {mail["id"]: mail for mail in batch["emails"]}
        for outcome in receipt["mails"]:
            mail = mails[outcome["mail_id"]]
            to = ", ".join(m for m in mail["to"] if "asynchronous.mail" not in m)
            rows.append((to, mail["subject"], outcome["status"],
                         outcome.get("message_id") or outcome.get("reason", "")))
    print(f"\n{'recipient':<24} {'subject':<36} {'status':<8} SES message id")
    for to, subject, status, message_id in rows:
        print(f"{to[:23]:<24} {subject[:35]:<36} {status:<8} {message_id}")
    return len(rows) == MAILS and all(row[2] == "sent" for row in rows)


def _job_report(run: JobRun) -> bool:
    status = run.status or {}
    print(f"\njob {run.job_id}: {status.get('state')}, {status.get('sent')} sent, "
          f"{status.get('failed')} failed of {status.get('recipients')}, "
          f"{run.finished - run.started:.1f} s from its manifest to an empty queue")
    for mail in run.mails[:MAILS_SHOWN]:
        text = "\n".join("    " + line for line in mail["text"].splitlines()[:3])
        print(f"\nTo: {', '.join(mail['destination'])}\nSubject: {mail['subject']}\n{text}")
    counts = run.counts
    once = len(counts) == JOB_RECIPIENTS and set(counts.values()) == {1}
    print(f"\ncheck: {JOB_RECIPIENTS:,} subscribers, {len(run.mails):,} mails, "
          f"{'each once' if once else 'NOT each once'}")
    return once and status.get("state") == "done"


def run(aws: LocalAws, s3: Any, app: Any, events: LocalSesEvents) -> bool:
    """The request through WordPress and everything it sent; True when all of it went out."""
    if shutil.which("php") is None:
        print("\nWordPress: skipped, no php here (`make demo` installs it when run as root: "
              "sudo make php-deps)")
        return False
    print(f"\nWordPress (PHP-FPM, nginx, MariaDB): one request sends {MAILS} mails and a "
          f"notify job to {JOB_RECIPIENTS:,} subscribers")
    s3.create_bucket(Bucket=BUCKET)
    site = Site(aws.endpoint, ROOT / "outbox" / "wordpress-site.log")
    try:
        answered: dict[str, Any] = {}

        def request_and_upload() -> tuple[str, int]:
            page, seconds = site.get(f"mails={MAILS}&role={site.info['role']}")
            answered.update(page)
            print(f"the page answered in {seconds * 1000:.0f} ms: {json.dumps(page)}")
            if not page.get("job"):
                raise RuntimeError(f"the page queued no job: {page}")
            _wait_for(s3, f"jobs/{page['job']}/manifest.json")  # uploaded after the answer
            return page["job"], JOB_RECIPIENTS

        job = run_uploaded(aws.endpoint, s3, boto3.client("sqs"), app, request_and_upload,
                           dict(os.environ), JOB_CONCURRENCY, events, BUCKET, timeout_s=300)
        _wait_for(s3, "queue/")
        batch_ok = _batch_table(s3, app) and answered.get("mails") == MAILS
        return _job_report(job) and batch_ok
    finally:
        site.stop()
