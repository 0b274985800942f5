"""The fault suite: one batch of N mails through the sender under one fault, then replays
until it settles; what SES accepted is counted per mail.

Each scenario returns a ``Row``; ``tests/functional/test_faults.py`` asserts 0
duplicates and 0 lost for each at 500 mails, and ``bench/faults.py`` prints the
table (``--mails`` for longer runs). In-process scenarios use moto in process,
the fake SES and a simulated clock; the process scenarios use the stand-in's
server (moto on 127.0.0.1, its SES publishing Send events) and real sender
processes (``python -m standin.lambda_runtime``), killed or raced for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws
from support.clock import FakeClock
from support.fakes import FakeSes, client_error
from support.sending import SerialClient, mail_ids
from support.world import BUCKET, SETTINGS, World, batch_document, upload

from chalicelib.ledger import Ledger, create_table
from chalicelib.pipeline import Stages
from chalicelib.send import SesSender


@dataclass(frozen=True)
class Row:
    scenario: str
    mails: int
    accepted: int  # sends SES accepted, duplicates included
    duplicates: int  # mails SES accepted more than once
    lost: int  # mails SES never accepted
    invocations: int


def _row(scenario: str, ids: list[str], subjects: list[str], invocations: int) -> Row:
    counts = Counter(subjects)
    return Row(scenario, len(ids), len(subjects), sum(1 for n in counts.values() if n > 1),
               sum(1 for i in ids if i not in counts), invocations)


# --- in process: moto, the fake SES, a simulated clock ---------------------------------


class _Publishing(SesSender):
    """SES's Send events reach the ledger right after each call, as on_ses_event would."""

    def __init__(self, ses: FakeSes, world: World):
        super().__init__(ses)
        self._world = world

    def _call(self, method: Any, **params: Any) -> str:
        try:
            return super()._call(method, **params)
        finally:
            self._world.publish_send_events()


def _in_process(scenario: str, mails: int, ses: FakeSes, budget_s: float = 900.0,
                ledger_client: Callable[[], Any] | None = None,
                first_ledger_client: Callable[[], Any] | None = None) -> Row:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_table(boto3.client("dynamodb", region_name="us-east-1"), SETTINGS.ledger_table)
        clock = FakeClock(start=time.time())
        ses._clock, ses._sleep = clock, clock.sleep
        world = World(s3, ses, clock)
        world.wall_clock = clock
        ids = mail_ids(mails)
        upload(s3, "queue/faults.json", batch_document("faults", ids))
        first = [True]

        def instance() -> Stages:
            make_client = first_ledger_client if first[0] and first_ledger_client else ledger_client
            first[0] = False
            stages = world.instance(workers=8, evidence_window=60.0,
                                    dynamodb=make_client() if make_client else None)
            return Stages(stages.settings, stages.store, _Publishing(ses, world),
                          stages.dispatcher, stages.recorder)

        world.drain(instance, budget_s=budget_s, retry_delay=60.0)
        # The same event once more, long after: it must send nothing.
        clock.sleep(3600)
        world.invoke(instance(), "queue/faults.json")
        return _row(scenario, ids, ses.subjects(), world.invocations)


class _Faulty:
    """A DynamoDB client whose ``operations`` fail as ``fail()`` says; the rest passes through
    (one call at a time: moto's in-process DynamoDB is not atomic under threads).

    ``attempts`` plays botocore's own retries (the sender's clients use standard mode,
    5 attempts), which the fault, injected above botocore, would otherwise skip.
    """

    def __init__(self, operations: set[str], fail: Callable[[str], Exception | None],
                 attempts: int = 1):
        self._client = SerialClient(boto3.client("dynamodb", region_name="us-east-1"))
        self._operations, self._fail, self._attempts = operations, fail, attempts

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name not in self._operations:
            return call

        def faulty(**params: Any) -> Any:
            for _ in range(self._attempts):
                error = self._fail(name)
                if error is None:
                    return call(**params)
            raise error

        return faulty


def ambiguous_timeouts(mails: int) -> Row:
    ses = FakeSes(lose_answer_share=0.1, seed=11)
    return _in_process("SES answer lost after it took the mail (10% of calls)", mails, ses)


def hung_ses_calls(mails: int) -> Row:
    # Calls hang to the client's read timeout (5 s), past the run's margin: the run stops
    # with mails unknown, and later attempts settle them by SES's Send events.
    ses = FakeSes(lose_answer_share=0.05, hang_seconds=5.0, seed=12)
    return _in_process("SES call hung past the deadline margin (5%)", mails, ses, budget_s=25.0)


def dynamodb_outage_during_completions(mails: int) -> Row:
    def down(_: str) -> Exception:
        return client_error("InternalServerError", "DynamoDB is down", "BatchWriteItem", 500)

    ses = FakeSes(seed=13)
    return _in_process(
        "DynamoDB outage during completion writes, then the same event", mails, ses,
        budget_s=60.0, first_ledger_client=lambda: _Faulty({"batch_write_item"}, down),
    )


def dynamodb_throttling(mails: int) -> Row:
    import random

    draw = random.Random(14)

    def throttled(operation: str) -> Exception | None:
        if draw.random() < 0.3:
            return client_error("ProvisionedThroughputExceededException", "slow down",
                                operation, 400)
        return None

    ses = FakeSes(seed=14)
    return _in_process(
        "DynamoDB throttling 30% of ledger calls", mails, ses,
        ledger_client=lambda: _Faulty({"batch_write_item", "transact_write_items",
                                       "batch_get_item"}, throttled, attempts=5),
    )


# --- real processes: the stand-in's server, sender processes killed or raced ------------


def _stand_in_env(endpoint: str, **extra: str) -> dict[str, str]:
    from standin.aws import CREDENTIALS

    return {
        **os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint,
        "POSTBAG_BUCKET": BUCKET, "POSTBAG_ALLOWED_SENDERS": "example.org",
        "POSTBAG_LEDGER_TABLE": SETTINGS.ledger_table,
        "AWS_LAMBDA_FUNCTION_NAME": "postbag-faults-on_batch_uploaded",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true",
        **extra,
    }


def _sent_subjects(endpoint: str) -> list[str]:
    """The subject (the mail id) of every send the stand-in's SES accepted (its Send events;
    each is followed by its recipients' Delivery, Bounce or Complaint)."""
    with urllib.request.urlopen(endpoint + "/_standin/ses-events", timeout=30) as answer:
        return [e["mail"]["commonHeaders"]["subject"] for e in json.load(answer)
                if e["eventType"] == "Send"]


def _sender(endpoint: str, timeout: float, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "standin.lambda_runtime", BUCKET, "queue/faults.json",
         "--timeout", str(timeout)],
        env=_stand_in_env(endpoint, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _process_world(mails: int, body: Callable[[str, list[str]], int], scenario: str) -> Row:
    from standin.aws import LocalAws

    with LocalAws() as aws:
        env = aws.client_env()
        s3 = boto3.client("s3", endpoint_url=aws.endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        boto3.client("ses", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing"
                     ).verify_domain_identity(Domain="example.org")
        create_table(boto3.client("dynamodb", endpoint_url=aws.endpoint, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing"),
                     SETTINGS.ledger_table)
        create_table(boto3.client("dynamodb", endpoint_url=aws.endpoint, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing"),
                     "postbag-suppression")  # the sender's default
        ids = mail_ids(mails)
        upload(s3, "queue/faults.json", batch_document("faults", ids))
        invocations = body(aws.endpoint, ids)
        return _row(scenario, ids, _sent_subjects(aws.endpoint), invocations)


def _deliver_send_events(endpoint: str, delivered: list[int]) -> None:
    """What SNS and on_ses_event do with the Send events the stand-in's SES published."""
    with urllib.request.urlopen(f"{endpoint}/_standin/ses-events?after={delivered[0]}",
                                timeout=30) as answer:
        events = json.load(answer)
    sent = [(e["mail"]["tags"]["postbag-key"][0], e["mail"]["messageId"]) for e in events
            if e["eventType"] == "Send"]
    delivered[0] += len(events)
    if sent:
        client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        Ledger.from_settings(SETTINGS, client).record_sent(sent)


SETTLE = {"POSTBAG_MAX_SEND_RATE": "200", "POSTBAG_DEADLINE_MARGIN_MS": "1000",
          "POSTBAG_EVIDENCE_WINDOW_SECONDS": "2", "POSTBAG_IDEMPOTENCY_NAMESPACE": "postbag-test"}


def killed_mid_batch(mails: int) -> Row:
    def body(endpoint: str, ids: list[str]) -> int:
        # Claims last the invocation: 6 s here, so the replay can take them over soon.
        victim = _sender(endpoint, 6.0, SETTLE)
        while len(_sent_subjects(endpoint)) < max(1, mails // 5) and victim.poll() is None:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)  # mid-batch: no release, no completion flushed
        victim.wait()
        sent_before = len(_sent_subjects(endpoint))
        assert 0 < sent_before < mails, f"not killed mid-batch ({sent_before} of {mails} sent)"
        delivered = [0]
        invocations = 1
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            _deliver_send_events(endpoint, delivered)  # SES's events, whatever the sender did
            invocations += 1
            replay = _sender(endpoint, 120.0, SETTLE)
            replay.wait()
            if replay.returncode == 0 and len(set(_sent_subjects(endpoint))) == mails:
                break
            time.sleep(2.5)  # Lambda retries later: past the dead claims and the window
        return invocations

    return _process_world(mails, body, "sender process SIGKILLed mid-batch, then replayed")


def twice_at_once(mails: int) -> Row:
    def body(endpoint: str, ids: list[str]) -> int:
        invocations = 0
        for _ in range(20):
            pair = [_sender(endpoint, 120.0, SETTLE) for _ in range(2)]
            codes = [process.wait() for process in pair]
            invocations += 2
            _deliver_send_events(endpoint, [0])
            if 0 in codes and len(set(_sent_subjects(endpoint))) == mails:
                break
            time.sleep(1)  # one met the other's claims: Lambda retries it
        return invocations

    return _process_world(mails, body, "every event delivered twice, at once, to two processes")


SCENARIOS: list[Callable[[int], Row]] = [
    ambiguous_timeouts, hung_ses_calls, dynamodb_outage_during_completions,
    dynamodb_throttling, killed_mid_batch, twice_at_once,
]
