"""Notify jobs' fan-out: CPU per personalised mail, a job end to end, and a cost model.

    .venv/bin/python bench/fanout.py cpu [--recipients 3000]
    .venv/bin/python bench/fanout.py cpu-sdk [--recipients 3000]
    .venv/bin/python bench/fanout.py e2e [--recipients 100000] [--rate 500] [--concurrency 4]
    .venv/bin/python bench/fanout.py model [--measured bench/fanout-measured.json]

``cpu``: the real ``on_work_item`` in this process on work items the real
splitter made, S3, SQS and the DynamoDB ledger in the stand-in's server
(another process, so its CPU is not counted), SES a fake that answers at
once, taking the call in this process. CPU (user + kernel) of the warm
invocations divided by their mails: read rows, claim, render, send, complete,
count. Target 0.3 ms. ``cpu-sdk``: the same with the sender's own SES clients
sending to the fake SES (``standin.fake_ses``, answering at once, in a process
of its own): the SDK's request, signing and HTTP counted too.

``e2e``: a job written as ``postbag notify`` writes it, split by
``on_job_uploaded``, sent by ``on_work_item`` in ``--concurrency`` worker
processes (``standin.sqs_runtime``), SES answering after 50 ms, the account's
rate (the shared limiter's) ``--rate``. Prints the time from the manifest's
upload to the last send against N/R (target at most 1.05 N/R), the busiest
second of sends from SES's own timestamps (never above R), their pace after
the first send (sends a second, mean and lowest whole second; pauses) and
whether each recipient got exactly one mail; writes these and what each chunk
cost (invocation time, AWS calls and items) to ``--measured``, which ``model``
reads.

``model``: one million recipients at 14, 100, 500 and 1,000 mails/s from those
per-chunk costs: time, Lambda invocations and GB-seconds (memory from
``.chalice/config.json``), SQS requests, DynamoDB write and read units, S3
requests, and the cost of each per million mails (``model()`` holds every
formula; ``tests/unit/test_cost_model.py`` checks them).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "chalice_app"), str(ROOT / "tests"), str(ROOT), str(ROOT / "bench")]

MEASURED = ROOT / "bench" / "fanout-measured.json"
CHALICE_CONFIG = ROOT / "chalice_app" / "chalice-config.json"  # the shared settings
BUCKET = "postbag-bench"
RATES = (14, 100, 500, 1000)
MODEL_RECIPIENTS = 1_000_000
SES_LATENCY_MS = 50
# A gap between two consecutive sends reaching SES longer than this is a pause (at R = 500
# sends are 2 ms apart).
PAUSE_SECONDS = 0.1
CPU_TARGET_MS = 0.3
CPU_RATE = 1_000  # cpu's account rate (see cpu())
# SES Send events delivered to on_ses_event to time one (one invocation each).
EVENTS_TIMED = 2000
# Send events in one on_ses_event call while the job runs (SNS sends one a call).
EVENTS_PER_CALL = 25
# What each request costs (us-east-1, on-demand, Nov 2026).
PRICES = {
    "ses_per_mail": 0.10 / 1000,
    "lambda_per_gb_second": 0.0000166667,
    "lambda_per_request": 0.20 / 1_000_000,
    "sqs_per_request": 0.40 / 1_000_000,
    "dynamodb_per_wru": 0.625 / 1_000_000,
    "dynamodb_per_rru": 0.125 / 1_000_000,
    "s3_per_put": 0.005 / 1000,
    "s3_per_get": 0.0004 / 1000,
}
# S3's request classes: PUT, COPY, POST, LIST at the PUT price; GET, HEAD and the rest at GET's.
S3_PUT_CLASS = ("PutObject", "CopyObject", "PostObject", "ListObjects", "ListObjectsV2",
                "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem")
# Lambda gives a function one vCPU's worth of CPU at 1,769 MB, in proportion below.
MB_PER_VCPU = 1769
DYNAMODB_READS = ("GetItem", "Query", "Scan")


# ---------------------------------------------------------------- the cost model


def model(recipients: int, rate: float, measured: Mapping[str, Any],
          prices: Mapping[str, float] = PRICES) -> dict[str, float]:
    """Time, requests and cost of a job of ``recipients`` at ``rate`` mails/s, from what
    one chunk (a work item of ``chunk_rows`` recipients) cost in a measured run.

    - time = N / R + the measured start-up (``overhead_seconds``: the manifest's upload
      to the first send);
    - instances = the fewest that reach R: ceil(R / one instance's top rate), which
      is the lower of what its send pool keeps in flight (``pool_size(R)`` sends
      of SES's latency each) and what its CPU share allows (Lambda gives
      ``memory / 1,769 MB`` of a vCPU, over the measured CPU per mail). Each
      instance is busy the whole time, waiting for the shared limiter's tokens
      when its share is below what it could send;
    - Lambda: ceil(N / chunk) × the measured invocations per chunk (hand-backs add
      some), + the splitter's one, + one ``on_ses_event`` per mail (SES's Send
      event, one SNS notification each); GB-s = memory × (instances × time, +
      the splitter's and the events' measured durations);
    - SQS, DynamoDB, S3: per chunk as measured (the splitter's share included),
      + per mail what recording its Send event costs; DynamoDB bills a
      transactional write as 2 write units per item, any other write as 1 per
      item (items under 1 KB), a consistent read as 1 read unit per item;
      S3 also gets the job's upload: a part per ``part_rows`` rows and the manifest;
    - SES: every mail.
    """
    chunk = measured["chunk_rows"]
    chunks = math.ceil(recipients / chunk)
    per_chunk, per_event = measured["per_chunk"], measured["per_event"]
    seconds = recipients / rate + measured["overhead_seconds"]
    memory_gb = measured["memory_mb"] / 1024
    pool_rate = pool_size(rate) / (measured["ses_latency_ms"] / 1000)
    cpu_rate = (measured["memory_mb"] / MB_PER_VCPU) / measured["cpu_seconds_per_mail"]
    instances = max(1, math.ceil(rate / min(pool_rate, cpu_rate)))
    invocations = math.ceil(chunks * per_chunk["invocations"]) + 1 + recipients
    gb_seconds = memory_gb * (instances * seconds + chunks * per_chunk["split_seconds"]
                              + recipients * per_event["seconds"])
    parts = math.ceil(recipients / measured["part_rows"])

    def total(name: str) -> float:
        return float(chunks * per_chunk[name] + recipients * per_event[name])

    sqs, wru, rru = total("sqs_requests"), total("dynamodb_wru"), total("dynamodb_rru")
    s3_put, s3_get = parts + 1 + total("s3_put"), total("s3_get")
    cost = {
        "ses": recipients * prices["ses_per_mail"],
        "lambda": gb_seconds * prices["lambda_per_gb_second"]
        + invocations * prices["lambda_per_request"],
        "sqs": sqs * prices["sqs_per_request"],
        "dynamodb": wru * prices["dynamodb_per_wru"] + rru * prices["dynamodb_per_rru"],
        "s3": s3_put * prices["s3_per_put"] + s3_get * prices["s3_per_get"],
    }
    per_million = 1_000_000 / recipients
    return {
        "rate": rate, "seconds": seconds, "instances": instances, "invocations": invocations,
        "gb_seconds": gb_seconds, "sqs_requests": sqs, "dynamodb_wru": wru,
        "dynamodb_rru": rru, "s3_put": s3_put, "s3_get": s3_get,
        **{f"cost_{name}": value * per_million for name, value in cost.items()},
        "cost_total": sum(cost.values()) * per_million,
    }


def pool_size(rate: float) -> int:
    """Sends one instance keeps in flight at ``rate`` (the sender's own rule)."""
    from chalicelib.config import Settings
    from chalicelib.dispatch import pool_size as sender_pool_size

    return sender_pool_size(rate, Settings().send_concurrency)


def units(calls: Mapping[str, float]) -> dict[str, float]:
    """What AWS bills for these calls (``CallCounter``'s names): SQS requests, DynamoDB
    write and read units, S3 PUT- and GET-class requests."""

    def total(service: str, names: Iterable[str], items: bool = False) -> float:
        return sum(calls.get(f"{service}.{n}{':items' if items else ''}", 0) for n in names)

    s3_calls = sum(n for name, n in calls.items() if name.startswith("s3.") and ":" not in name)
    s3_put = total("s3", S3_PUT_CLASS)
    return {
        "sqs_requests": sum(n for name, n in calls.items()
                            if name.startswith("sqs.") and ":" not in name),
        "dynamodb_wru": 2 * total("dynamodb", ["TransactWriteItems"], items=True)
        + total("dynamodb", ["BatchWriteItem"], items=True) + total("dynamodb", DYNAMODB_WRITES),
        "dynamodb_rru": total("dynamodb", ["BatchGetItem"], items=True)
        + total("dynamodb", DYNAMODB_READS),
        "s3_put": s3_put,
        "s3_get": s3_calls - s3_put,
    }


def chunk_costs(invocations: Iterable[Mapping[str, Any]], splitter: Mapping[str, int],
                split_seconds: float, chunks: int) -> dict[str, Any]:
    """What a chunk cost: the measured invocations of ``on_work_item`` and the splitter's
    calls, over the job's chunks. The poller's ReceiveMessage and DeleteMessageBatch
    are SQS requests too."""
    calls: Counter[str] = Counter(splitter)
    runs = 0
    seconds = 0.0
    for run in invocations:
        calls.update(run["calls"])
        calls["sqs.(poller)"] += run["poller_calls"]
        seconds += run["end"] - run["start"]
        runs += 1
    return {"invocations": runs / chunks, "seconds": seconds / chunks,
            "split_seconds": split_seconds / chunks,
            **{name: n / chunks for name, n in units(calls).items()},
            "calls": {name: n / chunks for name, n in sorted(calls.items())}}


# ---------------------------------------------------------------- the stand-in


def _prepare(aws: Any, counter: Any = None, **settings: str) -> Any:
    """The sender's environment and resources on the stand-in; returns the ``app`` module.
    ``counter`` counts the calls of every client the sender makes in this process."""
    import boto3

    os.environ.update(aws.sender_env(BUCKET, "postbag-bench-on_work_item", **settings))
    from chalicelib.ledger import create_table

    harness = boto3.session.Session()  # the benchmark's own calls are not the sender's
    harness.client("s3").create_bucket(Bucket=BUCKET)
    create_table(harness.client("dynamodb"), os.environ["POSTBAG_LEDGER_TABLE"])
    create_table(harness.client("dynamodb"), "postbag-suppression")  # the sender's default
    if counter is not None:
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", counter)
    import app

    return app


def _cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class ThreadProfiles:
    """cProfile in every thread while inside ``with``: the invoking thread's and the
    send pool's (a profiler sees only the thread it was enabled in), merged into one
    table, timed by each thread's CPU clock. Made before the threads start (the pool's
    start in the cold invocation): each new thread's first event while inside ``with``
    gives it its profiler, which then stays on. An idle worker's wait for its next task
    (``SimpleQueue.get``) still shows as a large time: that line is no CPU."""

    def __init__(self) -> None:
        self._profiles: dict[int, cProfile.Profile] = {}
        self._active = False
        threading.setprofile(self._start_here)  # threads started from now on

    def _start_here(self, *_: Any) -> None:
        # A thread's profile hook until cProfile takes it over.
        if self._active and threading.get_ident() not in self._profiles:
            profile = cProfile.Profile(time.thread_time)  # CPU, not the waits
            self._profiles[threading.get_ident()] = profile
            profile.enable()

    def __enter__(self) -> ThreadProfiles:
        self._active = True
        here = self._profiles.get(threading.get_ident())
        if here is None:
            self._start_here()
        else:
            here.enable()
        return self

    def __exit__(self, *_: object) -> None:
        self._active = False
        self._profiles[threading.get_ident()].disable()  # this thread's, between invocations

    def dump(self, path: Path) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]
        stats = pstats.Stats(*self._profiles.values())
        stats.dump_stats(str(path))
        stats.sort_stats("tottime").print_stats(40)


def cpu(recipients: int, chunk_rows: int, profile: Path | None = None,
        sdk: bool = False) -> dict[str, float]:
    """CPU per personalised mail of warm ``on_work_item`` invocations, SES answering at once;
    with ``profile``, the warm invocations' profile (every thread) is written there and
    its top functions printed (profiling slows them: the figure is then no figure).

    SES is ``InstantSes``, which takes the call in-process; with ``sdk``, the sender's own
    SES clients instead, against the fake SES answering at once in a process of its own
    (not counted): the SDK's request, signing and HTTP are then in the figure."""
    import boto3
    from sender import InstantSes

    from chalicelib import heap
    from chalicelib.send import SesSender
    from postbag.notify import notify, sender_checks
    from standin.aws import LocalAws
    from standin.fake_ses import FakeSesServer
    from standin.job_run import sent_mails, write_spec
    from standin.lambda_runtime import LambdaContext, s3_event
    from standin.sqs_runtime import create_queue, sqs_event

    with LocalAws(ses_quota=(1e9, 1e6)) as aws, tempfile.TemporaryDirectory() as folder, \
            (FakeSesServer(0, (1e9, 1e6)) if sdk else contextlib.nullcontext()) as ses:
        endpoints = {"AWS_ENDPOINT_URL_SES": ses.endpoint,
                     "AWS_ENDPOINT_URL_SESV2": ses.endpoint} if ses is not None else {}
        # A real rate: every send waits for its slot and a lease is 50 tokens, as on AWS.
        # At a million a second (no waits), leases cut to a run's need (500 tokens, 0.5 ms
        # of the schedule) went stale at once: a lease every two mails.
        app = _prepare(aws, POSTBAG_LEDGER_TABLE="postbag-bench-ledger",
                       POSTBAG_MAX_SEND_RATE=str(CPU_RATE), POSTBAG_WORK_QUEUE="postbag-bench-work",
                       POSTBAG_CHUNK_ROWS=str(chunk_rows), POWERTOOLS_LOG_LEVEL="CRITICAL",
                       **endpoints)
        sqs, s3 = boto3.client("sqs"), boto3.client("s3")
        queue_url = create_queue(sqs, "postbag-bench-work", 900)
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        fake = InstantSes()
        if ses is None:
            built = app.fanout_stages()
            swapped = dataclasses.replace(
                built, mail=dataclasses.replace(built.mail, sender=SesSender(fake, fake)))
            app.fanout_stages = lambda: swapped

        def sent() -> int:
            return len(sent_mails(ses.endpoint)) if ses is not None else len(fake.message_ids)

        job = notify(s3, BUCKET, write_spec(Path(folder), recipients),
                     *sender_checks(app.SETTINGS))
        app.on_job_uploaded(s3_event(BUCKET, job.manifest_key, 0, ""), LambdaContext(900))
        # A fan-out instance freezes its heap after its first on_work_item, not after the
        # split this process also ran (heap.py).
        heap._reached.discard(heap.FIRST_INVOCATION)
        messages = []
        while got := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                         AttributeNames=["All"]).get("Messages"):
            messages += got
        user = kernel = cold = 0.0
        warm_from = 0
        profiles = ThreadProfiles() if profile else None
        for number, message in enumerate(messages):
            event = sqs_event([message], arn["Attributes"]["QueueArn"])
            before = _cpu_seconds()
            with contextlib.redirect_stdout(io.StringIO()), \
                    (profiles if profiles and number else contextlib.nullcontext()):
                app.on_work_item(event, LambdaContext(900))  # (stdout: the metrics' EMF lines)
            after = _cpu_seconds()
            if number == 0:  # the cold start: clients, templates, the part's first read
                cold = (after[0] + after[1] - before[0] - before[1]) * 1000
                warm_from = sent()
                continue
            user += after[0] - before[0]
            kernel += after[1] - before[1]
        total = sent()
        mails = total - warm_from
        assert total == recipients, f"{total} of {recipients}"
        if profiles and profile:
            profiles.dump(profile)
    return {"mails": mails, "ms_per_mail": (user + kernel) * 1000 / mails,
            "kernel_ms_per_mail": kernel * 1000 / mails, "cold_start_ms": cold, "sdk": sdk}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def e2e(recipients: int, rate: float, concurrency: int, chunk_rows: int,
        measured_path: Path | None) -> dict[str, Any]:
    """A job of ``recipients`` end to end on the stand-in; what it came to."""
    import boto3
    from support.clock import busiest_second, pauses, per_full_second

    from postbag.notify import PART_ROWS
    from standin.aws import LocalAws
    from standin.fake_ses import FakeSesServer
    from standin.heap import freeze_long_lived
    from standin.job_run import run_job, write_spec
    from standin.lambda_runtime import LocalSesEvents
    from standin.sqs_runtime import CallCounter

    counter = CallCounter()
    load_at_start = os.getloadavg()[0]
    # This process stands in for SNS and the events' Lambda too, and holds what the run
    # gathers: frozen as the servers' heaps are, its full collections (up to 0.29 s) do not
    # take a core from the instances in one go.
    stop_freezing = freeze_long_lived()
    quota = (10 * recipients + 1e6, rate)
    # SES a fake in a process of its own (standin.fake_ses): moto's server, sending
    # or answering in its SES tap, cost ~0.6 ms of CPU a send on the 2 cores all share.
    with LocalAws() as aws, FakeSesServer(SES_LATENCY_MS, quota) as ses, \
            tempfile.TemporaryDirectory() as folder:
        app = _prepare(aws, counter, AWS_ENDPOINT_URL_SES=ses.endpoint,
                       AWS_ENDPOINT_URL_SESV2=ses.endpoint,
                       POSTBAG_LEDGER_TABLE="postbag-bench-ledger",
                       POSTBAG_MAX_SEND_RATE=str(rate), POSTBAG_WORK_QUEUE="postbag-bench-work",
                       POSTBAG_MAX_CONCURRENCY=str(concurrency),
                       POSTBAG_CHUNK_ROWS=str(chunk_rows))
        harness = boto3.session.Session()
        spec = write_spec(Path(folder), recipients)
        aws_cpu, ses_cpu = process_cpu_seconds(aws.pid), process_cpu_seconds(ses.pid)
        # Send events batched, so that one process keeps up with R (LocalSesEvents).
        pump = LocalSesEvents(ses.endpoint, app.on_ses_event, per_call=EVENTS_PER_CALL)
        run = run_job(ses.endpoint, harness.client("s3"), harness.client("sqs"), app, spec,
                      dict(os.environ), concurrency, pump,
                      stats_path=str(Path(folder) / "stats"),
                      timeout_s=max(600.0, 10 * recipients / rate))
        aws_cpu = process_cpu_seconds(aws.pid) - aws_cpu
        ses_cpu = process_cpu_seconds(ses.pid) - ses_cpu
        # The splitter's calls, one status read, and the Send events' writes: one
        # BatchWriteItem an invocation (at most 25 records), timed apart below.
        splitter = counter.take()
        splitter["dynamodb.BatchWriteItem"] -= pump.invocations - pump.failures
        splitter["dynamodb.BatchWriteItem:items"] -= pump.delivered
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            events = LocalSesEvents(ses.endpoint, app.on_ses_event).deliver(EVENTS_TIMED)
        event_seconds = (time.perf_counter() - started) / max(events, 1)
        event_calls = counter.take()
    stop_freezing.set()
    # When each send reached SES (its Send event's timestamp and the rate SES counts),
    # when SES answered it (after its latency), and when a worker started it, just after
    # the shared limiter granted the slot: the busiest windows of the three tell the
    # limiter's pacing from the jitter after it.
    stamps = sorted(m["arrived"] for m in run.mails)
    answered = [m["answered"] for m in run.mails]
    granted = [when for invocation in run.invocations for when in invocation["sends"]]
    counts = run.counts
    chunks = math.ceil(recipients / chunk_rows)
    total = stamps[-1] - run.started if stamps else float("nan")
    worker_cpu = sum(invocation["cpu"] for invocation in run.invocations)
    # The pace after the start-up, from the same arrivals at SES.
    pace, gaps = per_full_second(stamps), pauses(stamps, PAUSE_SECONDS)
    result = {
        "recipients": recipients, "rate": rate, "concurrency": concurrency,
        "chunk_rows": chunk_rows, "part_rows": PART_ROWS, "ses_latency_ms": SES_LATENCY_MS,
        "seconds": total, "ideal_seconds": recipients / rate,
        "busiest_second": busiest_second(stamps),
        "busiest_second_answered": busiest_second(answered),
        "busiest_second_granted": busiest_second(granted),
        "mails": len(run.mails), "addresses": len(counts),
        "each_once": len(counts) == recipients and set(counts.values()) == {1},
        "more_than_once": {address: sorted(m["timestamp"] for m in run.mails
                                           if address in str(m["destination"]).lower())
                           for address, n in counts.most_common(5) if n > 1},
        "send_events_recorded": pump.delivered, "send_event_failures": pump.failures,
        "status": run.status, "drained": run.drained,
        # The start-up: the split and the instances' cold starts, before the first send.
        "overhead_seconds": stamps[0] - run.started if stamps else float("nan"),
        "full_seconds": len(pace),
        "sends_per_second_mean": statistics.fmean(pace) if pace else float("nan"),
        "sends_per_second_lowest": min(pace, default=0),
        "pause_seconds": PAUSE_SECONDS, "pauses": len(gaps),
        "longest_pause_seconds": max(gaps, default=0.0),
        "cpu_seconds_per_mail": worker_cpu / max(len(run.mails), 1),
        "standin_cpu_seconds_per_mail": (aws_cpu + ses_cpu) / max(len(run.mails), 1),
        "ses_cpu_seconds_per_mail": ses_cpu / max(len(run.mails), 1),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "load_average_start": load_at_start, "load_average": os.getloadavg()[0],
        "memory_mb": json.loads(CHALICE_CONFIG.read_text())["lambda_memory_size"],
        "per_chunk": chunk_costs(run.invocations, splitter, run.split_seconds, chunks),
        "per_event": {"seconds": event_seconds,
                      **{name: n / max(events, 1) for name, n in units(event_calls).items()}},
    }
    if measured_path is not None:
        measured_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------- printing


def print_cpu(result: Mapping[str, Any]) -> None:
    # The target is the issue's, for render + ledger + send with SES answering at once; the
    # SDK's own request, signing and HTTP (cpu-sdk) alone take more than it.
    step, ses = (("cpu-sdk", "the sender's SES clients, the fake SES answering at once")
                 if result["sdk"] else
                 (f"cpu (target {CPU_TARGET_MS})", "SES taken in-process (InstantSes)"))
    print(f"{step}: {result['ms_per_mail']:.3f} ms per personalised mail, of which kernel "
          f"{result['kernel_ms_per_mail']:.3f}; {result['mails']:,} warm mails; the cold "
          f"invocation {result['cold_start_ms']:.0f} ms; {ses}")


def print_e2e(result: Mapping[str, Any]) -> None:
    ratio = result["seconds"] / result["ideal_seconds"]
    print(f"e2e: {result['recipients']:,} recipients at R = {result['rate']:g}/s, "
          f"{result['concurrency']} instances, SES answering after {SES_LATENCY_MS} ms")
    print(f"  manifest to last send {result['seconds']:.1f} s, N/R {result['ideal_seconds']:.1f} s:"
          f" {ratio:.3f}× (target ≤ 1.05)")
    print(f"  busiest second of sends: {result['busiest_second']} reaching SES (R = "
          f"{result['rate']:g}); {result['busiest_second_granted']} started by the workers, "
          f"{result['busiest_second_answered']} answered by SES")
    print(f"  pace at SES: the first send {result['overhead_seconds']:.2f} s after the manifest;"
          f" then {result['sends_per_second_mean']:.0f} sends a second on average over the "
          f"{result['full_seconds']} whole seconds between the first and the last, the lowest "
          f"{result['sends_per_second_lowest']}; pauses over {result['pause_seconds']:g} s: "
          f"{result['pauses']}, the longest {result['longest_pause_seconds']:.2f} s")
    verdict = "each once" if result["each_once"] else \
        f"NOT each once: {json.dumps(result['more_than_once'])}"
    if not result["drained"]:
        verdict += " (the run timed out with work left on the queue)"
    print(f"  {result['recipients']:,} recipients, {result['mails']:,} mails to "
          f"{result['addresses']:,} addresses: {verdict}; job {result['status']['state']}")
    chunk = result["per_chunk"]
    print(f"  per chunk of {result['chunk_rows']}: {chunk['invocations']:.2f} invocations, "
          f"{chunk['seconds']:.2f} s, SQS {chunk['sqs_requests']:.1f}, DynamoDB WRU "
          f"{chunk['dynamodb_wru']:.0f} RRU {chunk['dynamodb_rru']:.1f}, S3 PUT "
          f"{chunk['s3_put']:.2f} GET {chunk['s3_get']:.2f}; the workers' CPU "
          f"{result['cpu_seconds_per_mail'] * 1000:.2f} ms per mail")
    print(f"  the stand-in servers' CPU {result['standin_cpu_seconds_per_mail'] * 1000:.2f} ms "
          f"per mail, of which the fake SES {result['ses_cpu_seconds_per_mail'] * 1000:.2f}; "
          f"load average {result['load_average_start']:.1f} at the start, "
          f"{result['load_average']:.1f} at the end (2 cores)")


def print_model(measured: Mapping[str, Any], recipients: int = MODEL_RECIPIENTS) -> None:
    rows = [model(recipients, rate, measured) for rate in RATES]
    print(f"model: {recipients:,} recipients, chunks of {measured['chunk_rows']}, "
          f"{measured['memory_mb']} MB (from a measured run of "
          f"{measured['recipients']:,} at {measured['rate']:g}/s)")
    print("| R (mails/s) | time | instances | Lambda invocations | GB-s | SQS requests "
          "| DynamoDB WRU / RRU | S3 PUT / GET | SES $ | Lambda $ | SQS $ | DynamoDB $ "
          "| S3 $ | total $ |")
    print("|" + " --- |" * 14)
    for row in rows:
        hours = row["seconds"] / 3600
        print(f"| {row['rate']:g} | {hours:.1f} h | {row['instances']} "
              f"| {row['invocations']:,.0f} | {row['gb_seconds']:,.0f} "
              f"| {row['sqs_requests']:,.0f} | {row['dynamodb_wru']:,.0f} / "
              f"{row['dynamodb_rru']:,.0f} | {row['s3_put']:,.0f} / {row['s3_get']:,.0f} "
              f"| {row['cost_ses']:.2f} | {row['cost_lambda']:.2f} | {row['cost_sqs']:.2f} "
              f"| {row['cost_dynamodb']:.2f} | {row['cost_s3']:.4f} | {row['cost_total']:.2f} |")


STEPS = ("cpu", "cpu-sdk", "e2e", "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=(*STEPS, "all"), nargs="?", default="all")
    parser.add_argument("--recipients", type=int)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--chunk-rows", type=int, default=500)
    parser.add_argument("--measured", type=Path, default=MEASURED)
    parser.add_argument("--profile", type=Path,
                        help="cpu, cpu-sdk: write the warm invocations' profile (all threads) here")
    args = parser.parse_args()
    if args.what == "all" and args.profile:
        parser.error("--profile: with cpu or cpu-sdk, one at a time")
    if args.what == "all":
        # Each step in a process of its own: the sender's module reads its settings and
        # makes its clients once, against the stand-in of the step that imported it.
        for step in STEPS:
            options = [arg for arg in sys.argv[1:] if arg != "all"]
            subprocess.run([sys.executable, __file__, step, *options], check=True)
    elif args.what in ("cpu", "cpu-sdk"):
        print_cpu(cpu(args.recipients or 3000, args.chunk_rows, args.profile,
                      sdk=args.what == "cpu-sdk"))
    elif args.what == "e2e":
        print_e2e(e2e(args.recipients or 100_000, args.rate, args.concurrency, args.chunk_rows,
                      args.measured))
    else:
        print_model(json.loads(args.measured.read_text()))


if __name__ == "__main__":
    main()
