"""Lambda's SQS event source mapping, played locally with real concurrency.

moto stores SQS messages but invokes no function. ``LocalSqsMapping`` runs
``concurrency`` worker *processes* (the mapping's ``maximum_concurrency``):
each is one Lambda instance, with its own module-level caches (clients,
stages, the rate limiter's view) as on Lambda, and each long-polls the
queue (``ReceiveMessage`` with ``WaitTimeSeconds``), invokes the handler with
the event Lambda builds for SQS (one record per message, as Chalice's
``SQSEvent`` reads it) and a ``LambdaContext`` whose deadline is the
function's timeout, then deletes the messages if it returned. If it raised,
the messages are left to come back after the queue's visibility timeout, and
after ``maxReceiveCount`` receives SQS moves them to the dead-letter queue
(``create_queue`` sets the redrive policy provisioning sets). An invocation
that overruns its timeout ends its process, as Lambda ends the sandbox; the
mapping starts a fresh one (a cold start) in its place.

Each worker appends one JSON line per invocation to ``stats_path``: its
start, end and CPU, whether it returned, and the AWS calls the function made
(the poller's own ``ReceiveMessage`` and ``DeleteMessageBatch`` counted
apart). ``bench/fanout.py`` builds its cost model from them.

    python -m standin.sqs_runtime QUEUE_URL [--handler app:on_work_item] [--timeout S]

runs one worker (the environment says where AWS is); ``LocalSqsMapping`` starts them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from standin.aws import REPO_ROOT
from standin.lambda_runtime import LambdaContext

DEFAULT_HANDLER = "app:on_work_item"
# The poller's long poll: short enough that a stopped worker ends within it.
WAIT_SECONDS = 2
# An invocation that overruns its timeout: the exit status of its process.
TIMED_OUT = 124


def create_queue(sqs: Any, name: str, function_timeout: int) -> str:
    """The work queue and its dead-letter queue, with the redrive policy and visibility
    timeout provisioning gives them (``postbag.resources.work_queue``); returns its URL."""
    from postbag.resources.work_queue import MAX_RECEIVE_COUNT, VISIBILITY_PER_FUNCTION_TIMEOUT

    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
               "maxReceiveCount": MAX_RECEIVE_COUNT}
    return str(sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(VISIBILITY_PER_FUNCTION_TIMEOUT * function_timeout),
        "RedrivePolicy": json.dumps(redrive),
    })["QueueUrl"])


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source hands the function: one record per message."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": m.get("MessageAttributes", {}),
        "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    } for m in messages]}


def queue_counts(sqs: Any, queue_url: str) -> dict[str, int]:
    """Messages waiting, in flight and delayed."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    got = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return {name: int(got.get(name, 0)) for name in names}


def items(operation: str, params: Mapping[str, Any]) -> int:
    """Items one call carries, for the calls that carry several (what DynamoDB bills by)."""
    if operation == "TransactWriteItems":
        return len(params.get("TransactItems", ()))
    if operation == "BatchWriteItem":
        return sum(len(requests) for requests in params.get("RequestItems", {}).values())
    if operation == "BatchGetItem":
        return sum(len(table["Keys"]) for table in params.get("RequestItems", {}).values())
    if operation == "SendMessageBatch":
        return len(params.get("Entries", ()))
    return 0


# The calls that send a mail, as CallCounter names them.
SES_SENDS = frozenset({"ses.SendEmail", "ses.SendRawEmail", "sesv2.SendEmail"})


class CallCounter:
    """Counts the AWS calls this process makes, by ``service.Operation``, and the items
    of those that carry several (``service.Operation:items``). A botocore
    ``before-parameter-build`` handler. It also notes when each SES send started
    (``sends``, seconds since the epoch): just after the rate limiter granted its
    slot, so that a benchmark can tell the limiter's pacing from SES's clock."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sends: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_name}.{model.name}"
        carried = items(model.name, params)
        with self._lock:
            if name in SES_SENDS:
                self.sends.append(time.time())
            self.calls[name] += 1
            if carried:
                self.calls[f"{name}:items"] += carried

    def take(self) -> dict[str, int]:
        with self._lock:
            taken, self.calls = dict(self.calls), Counter()
        return taken

    def take_sends(self) -> list[float]:
        with self._lock:
            taken, self.sends = self.sends, []
        return taken


class Worker:
    """One Lambda instance: polls, invokes, deletes; one stats line per invocation."""

    def __init__(self, queue_url: str, handler: Callable[[dict, Any], Any], timeout_s: float,
                 function_name: str, batch_size: int, stats_path: str | None,
                 counter: CallCounter):
        import boto3
        from botocore.config import Config

        # The poller is Lambda's, not the function's: its own session, so its calls are
        # not counted with the function's.
        self._sqs = boto3.session.Session().client(
            "sqs", config=Config(connect_timeout=2, read_timeout=WAIT_SECONDS + 10))
        self._queue_url = queue_url
        attributes = self._sqs.get_queue_attributes(QueueUrl=queue_url,
                                                    AttributeNames=["QueueArn"])
        self._queue_arn = attributes["Attributes"]["QueueArn"]
        self._handler = handler
        self._timeout_s = timeout_s
        self._function_name = function_name
        self._batch_size = batch_size
        self._stats_path = stats_path
        self.counter = counter
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            got = self._sqs.receive_message(
                QueueUrl=self._queue_url, MaxNumberOfMessages=self._batch_size,
                WaitTimeSeconds=WAIT_SECONDS, AttributeNames=["All"],
                MessageAttributeNames=["All"])
            if got.get("Messages"):
                self._invoke(got["Messages"])

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        started, cpu = time.time(), _cpu()
        error = None
        self.counter.take()  # calls made between invocations are not this one's
        self.counter.take_sends()
        signal.setitimer(signal.ITIMER_REAL, self._timeout_s)
        try:
            self._handler(sqs_event(messages, self._queue_arn),
                          LambdaContext(self._timeout_s, self._function_name))
        except Exception as exc:  # noqa: BLE001 - Lambda's runtime catches everything too
            error = f"{type(exc).__name__}: {exc}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        line = {"pid": os.getpid(), "start": started, "end": time.time(),
                "cpu": _cpu() - cpu, "messages": len(messages), "error": error,
                "receive_count": int(messages[0].get("Attributes", {})
                                     .get("ApproximateReceiveCount", 1)),
                "calls": self.counter.take(), "sends": self.counter.take_sends(),
                "poller_calls": 1}
        if error is None:  # else left for SQS to hand out again, or to its dead-letter queue
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)])
            line["poller_calls"] = 2
        else:
            print(f"invocation failed: {error}", file=sys.stderr, flush=True)
        self.write(line)

    def write(self, line: Mapping[str, Any]) -> None:
        if self._stats_path:
            # One short line per write to an O_APPEND file: workers' lines never interleave.
            with open(self._stats_path, "a") as stats:
                stats.write(json.dumps(line) + "\n")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _handler(reference: str) -> Callable[[dict, Any], Any]:
    """``module:attribute``, imported after the environment is set (app.py reads it at import)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one worker of LocalSqsMapping")
    parser.add_argument("queue_url")
    parser.add_argument("--handler", default=DEFAULT_HANDLER)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--function-name", default="postbag-local-on_work_item")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--stats")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(REPO_ROOT, "chalice_app"))
    import boto3

    counter = CallCounter()
    # Clients copy the session's hooks when made: register before the handler makes any.
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build", counter)
    worker = Worker(args.queue_url, _handler(args.handler), args.timeout, args.function_name,
                    args.batch_size, args.stats, counter)

    def stop(*_: object) -> None:
        worker.stopping = True  # the invocation under way finishes first, as on Lambda

    def timed_out(*_: object) -> None:
        print(f"Task timed out after {args.timeout:.2f} seconds", file=sys.stderr, flush=True)
        os._exit(TIMED_OUT)  # Lambda ends the sandbox; its messages come back later

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, timed_out)
    worker.run()
    return 0


class LocalSqsMapping:
    """``concurrency`` worker processes on one queue; a context manager that stops them
    (by PID: SIGTERM, which lets an invocation under way finish, then SIGKILL).

    ``env`` is the function's environment (``LocalAws.sender_env``); a worker that
    exits while the mapping runs (a timed-out invocation) is replaced.
    """

    def __init__(self, queue_url: str, env: Mapping[str, str], concurrency: int,
                 handler: str = DEFAULT_HANDLER, timeout_s: float = 300.0,
                 batch_size: int = 1, stats_path: str | None = None,
                 log_path: str | None = None):
        self.queue_url = queue_url
        self.concurrency = concurrency
        self.stats_path = stats_path
        # What the workers print: the handler's logs, failed invocations.
        self.log_path = log_path or tempfile.mkstemp(prefix="sqs-runtime-", suffix=".log")[1]
        self._env = {**env, "PYTHONPATH": os.pathsep.join(
            filter(None, (REPO_ROOT, env.get("PYTHONPATH"))))}
        self._command = [
            sys.executable, "-m", "standin.sqs_runtime", queue_url, "--handler", handler,
            "--timeout", str(timeout_s), "--batch-size", str(batch_size),
            "--function-name", env.get("AWS_LAMBDA_FUNCTION_NAME", "postbag-local-on_work_item"),
        ] + (["--stats", stats_path] if stats_path else [])
        self._workers: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._running = False
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._workers]

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(self._command, env=self._env, cwd=REPO_ROOT,
                                    stdout=log, stderr=log)

    def start(self) -> LocalSqsMapping:
        self._running = True
        with self._lock:
            self._workers = [self._spawn() for _ in range(self.concurrency)]
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while self._running:
            time.sleep(0.5)
            with self._lock:
                for i, worker in enumerate(self._workers):
                    if self._running and worker.poll() is not None:
                        self._workers[i] = self._spawn()
                        self.restarts += 1

    def stop(self) -> None:
        self._running = False
        if self._supervisor is not None:
            self._supervisor.join()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + WAIT_SECONDS + 30
        for worker in workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait()

    def wait_until_drained(self, sqs: Any, timeout_s: float, poll_s: float = 0.5,
                           settled: int = 2) -> bool:
        """Until the queue holds nothing waiting, in flight or delayed ``settled`` times in a
        row (a hand-back may be on its way); False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        empty = 0
        while time.monotonic() < deadline:
            empty = empty + 1 if not any(queue_counts(sqs, self.queue_url).values()) else 0
            if empty >= settled:
                return True
            time.sleep(poll_s)
        return False

    def invocations(self) -> list[dict[str, Any]]:
        """The stats lines the workers wrote."""
        if not self.stats_path or not Path(self.stats_path).exists():
            return []
        return [json.loads(line) for line in Path(self.stats_path).read_text().splitlines()]

    def __enter__(self) -> LocalSqsMapping:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    raise SystemExit(worker_main())
