"""The stand-in's SQS event source mapping: concurrent worker processes, each a Lambda
instance, deleting what succeeded and leaving what failed for SQS to hand out again."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from standin.aws import LocalAws
from standin.sqs_runtime import LocalSqsMapping, create_queue, queue_counts

pytestmark = pytest.mark.server

HANDLER = "tests.support.sqs_app:on_message"


@pytest.fixture
def aws(tmp_path):
    with LocalAws() as server:
        sqs = boto3.client("sqs", endpoint_url=server.endpoint)
        yield server, sqs, tmp_path


def mapping(server, tmp_path, queue_url, concurrency, timeout_s=30.0) -> LocalSqsMapping:
    env = {**server.client_env(), "SQS_APP_RESULTS": str(tmp_path / "results.ndjson"),
           "AWS_LAMBDA_FUNCTION_NAME": "standin-test-on_message"}
    return LocalSqsMapping(queue_url, env, concurrency, handler=HANDLER, timeout_s=timeout_s,
                           stats_path=str(tmp_path / "stats.ndjson"))


def results(tmp_path) -> list[dict]:
    path = tmp_path / "results.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def send(sqs, queue_url, bodies: list[dict]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = best = 0
    for _, step in edges:
        running += step
        best = max(best, running)
    return best


def test_workers_are_separate_instances_running_at_once(aws):
    server, sqs, tmp_path = aws
    queue_url = create_queue(sqs, "standin-test-work", function_timeout=30)
    send(sqs, queue_url, [{"id": f"m{i}", "sleep": 0.8} for i in range(12)])
    with mapping(server, tmp_path, queue_url, concurrency=4) as local:
        started = time.monotonic()
        assert local.wait_until_drained(sqs, timeout_s=60)
        elapsed = time.monotonic() - started
        pids = set(local.pids)
    done = results(tmp_path)
    assert sorted(r["id"] for r in done) == sorted(f"m{i}" for i in range(12))
    assert {r["pid"] for r in done} <= pids and len({r["pid"] for r in done}) >= 2
    assert most_at_once([(r["start"], r["end"]) for r in done]) <= 4
    assert elapsed < 12 * 0.8  # one at a time would take 9.6 s; four at once about 2.4
    assert all(0 < r["deadline_ms"] <= 30_000 for r in done)
    stats = local.invocations()
    assert len(stats) == 12 and all(s["error"] is None and s["poller_calls"] == 2 for s in stats)


def test_a_failed_invocation_is_redelivered_and_gives_up_into_the_dead_letter_queue(aws):
    server, sqs, tmp_path = aws
    from postbag.resources.work_queue import MAX_RECEIVE_COUNT

    queue_url = create_queue(sqs, "standin-test-work", function_timeout=30)
    # A short visibility timeout, so that the test need not wait six function timeouts.
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})
    send(sqs, queue_url, [{"id": "flaky", "fail_until": 1}, {"id": "broken", "fail_until": 99}])
    with mapping(server, tmp_path, queue_url, concurrency=2) as local:
        assert local.wait_until_drained(sqs, timeout_s=60)
    receives = {}
    for r in results(tmp_path):
        receives.setdefault(r["id"], []).append(r["receive"])
    assert receives["flaky"] == [1, 2]
    assert receives["broken"] == list(range(1, MAX_RECEIVE_COUNT + 1))
    dlq = sqs.get_queue_url(QueueName="standin-test-work-dlq")["QueueUrl"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["id"] for m in dead] == ["broken"]
    assert sum(1 for s in local.invocations() if s["error"]) == 1 + MAX_RECEIVE_COUNT


def test_an_invocation_past_its_deadline_ends_its_instance_and_the_message_comes_back(aws):
    server, sqs, tmp_path = aws
    queue_url = create_queue(sqs, "standin-test-work", function_timeout=2)
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"VisibilityTimeout": "1"})
    send(sqs, queue_url, [{"id": "slow", "fail_until": -1}])
    with mapping(server, tmp_path, queue_url, concurrency=1, timeout_s=1.0) as local:
        deadline = time.monotonic() + 30
        while local.restarts < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert local.restarts >= 2  # each receive timed out and its instance was replaced
    assert results(tmp_path) == []  # it never finished
    counts = queue_counts(sqs, queue_url)
    assert counts["ApproximateNumberOfMessages"] + counts["ApproximateNumberOfMessagesNotVisible"]\
        in (0, 1)
