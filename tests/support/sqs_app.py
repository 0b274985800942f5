"""A Chalice app with one SQS handler, for testing the stand-in's SQS runtime alone.

Each message body is JSON: ``{"id": ..., "sleep": seconds, "fail_until": n}``.
The handler appends ``{"id", "pid", "start", "end", "receive", "deadline_ms"}``
to the file ``SQS_APP_RESULTS`` names, sleeps, then raises while the message's
receive count is at most ``fail_until`` (``-1``: overrun the deadline instead).
"""

from __future__ import annotations

import json
import os
import time

from chalice import Chalice
from chalice.app import SQSEvent

app = Chalice(app_name="standin-sqs-test")
# Module level, as the sender's caches are: one per worker process.
INSTANCE = {"pid": os.getpid(), "invocations": 0}


@app.on_sqs_message(queue="standin-test-work", batch_size=1)
def on_message(event: SQSEvent) -> None:
    INSTANCE["invocations"] += 1
    for record in event:
        body = json.loads(record.body)
        receive = int(record.to_dict()["attributes"]["ApproximateReceiveCount"])
        started = time.time()
        if body.get("fail_until") == -1:
            time.sleep(3600)  # the worker's deadline ends this process first
        time.sleep(body.get("sleep", 0))
        line = {"id": body["id"], "pid": INSTANCE["pid"], "start": started, "end": time.time(),
                "receive": receive, "invocation": INSTANCE["invocations"],
                "deadline_ms": event.context.get_remaining_time_in_millis()}
        with open(os.environ["SQS_APP_RESULTS"], "a") as results:
            results.write(json.dumps(line) + "\n")
        if receive <= body.get("fail_until", 0):
            raise RuntimeError(f"{body['id']} fails on receive {receive}")
