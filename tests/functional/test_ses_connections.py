"""The sender's SES clients keep a connection for every send thread: with as many sends in
flight as the dispatcher has threads, none is closed after its answer to make room, so no
send opens a new connection (on AWS, a TLS handshake) beside a pool of idle ones."""

from __future__ import annotations

import logging
import threading

import boto3
import pytest

import app
from chalicelib.dispatch import MAX_WORKERS
from standin.fake_ses import FakeSesServer
from standin.job_run import sent_mails

pytestmark = pytest.mark.server

QUOTA = (50_000.0, 1000.0)


def test_every_send_thread_keeps_its_connection(caplog):
    with FakeSesServer(latency_ms=200, quota=QUOTA) as ses:
        sesv2 = boto3.client("sesv2", endpoint_url=ses.endpoint, region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing",
                             config=app.SES_CLIENT_CONFIG)
        start = threading.Barrier(MAX_WORKERS)

        def send(n: int) -> None:
            start.wait(timeout=30)  # all in flight at once, as a busy send pool is
            for _ in range(2):
                sesv2.send_email(FromEmailAddress="news@example.org",
                                 Destination={"ToAddresses": [f"u{n}@example.net"]},
                                 Content={"Simple": {"Subject": {"Data": "s"},
                                                     "Body": {"Text": {"Data": "t"}}}})

        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
            threads = [threading.Thread(target=send, args=(n,)) for n in range(MAX_WORKERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert len(sent_mails(ses.endpoint)) == 2 * MAX_WORKERS
    assert not [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()]
