"""The sender's SES client settings (``app.SES_CLIENT_CONFIG``), against the fake SES.

A connection for every send thread: with as many sends in flight as the dispatcher has
threads, none is closed after its answer to make room, so no send opens a new connection
(on AWS, a TLS handshake) beside a pool of idle ones. And no parameter checks of
botocore's: a request SES refuses is that mail's own failure, never SES unavailable."""

from __future__ import annotations

import logging
import threading

import boto3
import pytest
from botocore.exceptions import ClientError

import app
from chalicelib.dispatch import MAX_WORKERS
from chalicelib.errors import RejectedBySes
from chalicelib.send import translate
from standin.fake_ses import FakeSesServer
from standin.job_run import sent_mails

pytestmark = pytest.mark.server

QUOTA = (50_000.0, 1000.0)


def sender_client(endpoint: str):
    return boto3.client("sesv2", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=app.SES_CLIENT_CONFIG)


def test_every_send_thread_keeps_its_connection(caplog):
    with FakeSesServer(latency_ms=200, quota=QUOTA) as ses:
        sesv2 = sender_client(ses.endpoint)
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


def test_a_request_ses_refuses_fails_as_rejected_not_unavailable():
    """Without content: botocore's checks would have refused it before it left, an error
    the sender reads as SES unavailable, to be tried again and again."""
    with FakeSesServer(latency_ms=0, quota=QUOTA) as ses, pytest.raises(ClientError) as raised:
        sender_client(ses.endpoint).send_email(
            FromEmailAddress="news@example.org",
            Destination={"ToAddresses": ["ana@example.net"]})
    assert isinstance(translate(raised.value), RejectedBySes)
