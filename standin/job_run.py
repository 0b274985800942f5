"""A notify job end to end on the stand-in: written, split, fanned out, counted.

The job is written as an operator writes one (``postbag notify``'s writer:
parts, then the manifest), the manifest's S3 event is delivered to
``on_job_uploaded`` in this process, like every S3 notification the app declares
(the splitter puts the work items on the SQS work queue), and
``sqs_runtime.LocalSqsMapping`` runs ``on_work_item`` in worker processes until the
queue is empty. Used by ``make demo`` and
``bench/fanout.py``.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from standin.lambda_runtime import LocalDispatcher, LocalSesEvents, app_routes
from standin.server import MAILS_PATH
from standin.sqs_runtime import LocalSqsMapping, create_queue

# What the demo and the benchmark send: every recipient's own name, subject and followers.
TEMPLATE = {
    "subject": "{{ recipient.name }}, a new post: {{ post.title }}",
    "html": "<p>Hi {{ recipient.name }},</p><p><a href=\"{{ post.url }}\">{{ post.title }}</a>"
            " is out.</p>{% if new_followers %}<p>New followers since your last visit: "
            "{{ new_followers | join(', ') }}</p>{% endif %}",
    "text": "Hi {{ recipient.name }},\n\n{{ post.title }} is out: {{ post.url }}\n"
            "{% if new_followers %}New followers since your last visit: "
            "{{ new_followers | join(', ') }}\n{% endif %}",
}
CONTEXT = {"new_followers": [],
           "post": {"title": "Café culture & <tags>", "url": "https://blog.example.org/?p=42"}}
META = {"from": "Blog <news@example.org>", "reply_to": ["Editors <editors@example.org>"],
        "tags": {"source": "new-post"}, "list": "new-posts"}
FOLLOWERS = ("Ana", "Bo", "Chen", "Dara", "Émile", "Farah")


def address(number: int) -> str:
    return f"reader-{number:06d}@example.net"


def recipients(count: int, seed: int = 42) -> list[dict[str, Any]]:
    """``count`` distinct recipients, each with a name and some followers of their own, and
    the one-click unsubscribe URL the site computes for a job that names a list (META's)."""
    pick = random.Random(seed)
    return [{"email": address(i), "name": f"Reader {i}", "user_id": i + 1,
             "vars": {"new_followers": pick.sample(FOLLOWERS, pick.randint(0, 3))},
             "unsubscribe_url": f"https://blog.example.org/wp-json/postbag/v1/unsubscribe"
                                f"?list=new-posts&t=demo{i:06d}"}
            for i in range(count)]


def write_spec(directory: Path, count: int) -> Path:
    """A ``postbag notify`` spec for ``count`` recipients, with its NDJSON recipients file."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = directory / "recipients.ndjson"
    rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recipients(count)),
                    encoding="utf-8")
    spec = directory / "job.json"
    spec.write_text(json.dumps({
        "site": {"url": "https://blog.example.org", "blog_id": 1}, "meta": META,
        "template": TEMPLATE, "context": CONTEXT, "recipients": rows.name,
    }, ensure_ascii=False), encoding="utf-8")
    return spec


def sent_mails(endpoint: str, after: int = 0) -> list[dict[str, Any]]:
    """What the stand-in's SES accepted since the ``after``-th send: To, Subject, text."""
    with urllib.request.urlopen(f"{endpoint}{MAILS_PATH}?after={after}", timeout=60) as answer:
        mails: list[dict[str, Any]] = json.load(answer)
    return mails


def per_address(mails: list[dict[str, Any]]) -> Counter[str]:
    """How many mails each address got."""
    return Counter(parseaddr(to)[1].lower() for mail in mails for to in mail["destination"])


@dataclass
class JobRun:
    job_id: str
    recipients: int
    started: float  # the manifest's upload (epoch seconds)
    finished: float  # the work queue found empty
    status: dict[str, Any] | None
    mails: list[dict[str, Any]] = field(default_factory=list)
    invocations: list[dict[str, Any]] = field(default_factory=list)
    drained: bool = True
    split_seconds: float = 0.0  # on_job_uploaded's invocation

    @property
    def counts(self) -> Counter[str]:
        return per_address(self.mails)


# Puts a job in the bucket, its manifest last; answers its id and recipient count.
Upload = Callable[[], tuple[str, int]]


def run_job(endpoint: str, s3: Any, sqs: Any, app: Any, spec: Path, env: Mapping[str, str],
            concurrency: int, events: LocalSesEvents, stats_path: str | None = None,
            timeout_s: float = 900.0, function_timeout: int = 300,
            dispatcher: LocalDispatcher | None = None) -> JobRun:
    """Upload the job ``spec`` describes, as ``postbag notify`` does, and run it to the end
    (``run_uploaded``)."""
    from postbag.notify import notify, sender_checks

    def upload() -> tuple[str, int]:
        outcome = notify(s3, env["POSTBAG_BUCKET"], spec, *sender_checks(app.SETTINGS))
        return outcome.job_id, outcome.recipients

    return run_uploaded(endpoint, s3, sqs, app, upload, env, concurrency, events,
                        env["POSTBAG_BUCKET"], stats_path, timeout_s, function_timeout,
                        dispatcher)


def run_uploaded(endpoint: str, s3: Any, sqs: Any, app: Any, upload: Upload,
                 env: Mapping[str, str], concurrency: int, events: LocalSesEvents, bucket: str,
                 stats_path: str | None = None, timeout_s: float = 900.0,
                 function_timeout: int = 300,
                 dispatcher: LocalDispatcher | None = None) -> JobRun:
    """Run the job ``upload()`` puts in ``bucket`` to the end; ``app`` is the sender's
    ``app`` module imported with ``env`` set, ``env`` the workers' environment. The
    bucket's new objects go to the handlers by ``dispatcher`` (the caller's, when it
    has one for the bucket already: a second one would deliver everything again).

    SES's Send events go to ``on_ses_event`` (``events``) while the job runs: they
    settle the sends whose answer was lost, which are otherwise sent again once
    the evidence window has passed (ledger.py), as they would be on AWS.
    """
    queue_url = create_queue(sqs, app.SETTINGS.work_queue, function_timeout)
    mails_before = len(sent_mails(endpoint))
    with LocalSqsMapping(queue_url, env, concurrency, timeout_s=function_timeout,
                         stats_path=stats_path) as mapping, events.pumping():
        job_id, recipients = upload()
        started = time.time()  # the manifest is uploaded last: the job starts now
        for delivery in (dispatcher or LocalDispatcher(s3, bucket, app_routes(app))).run():
            if delivery.error:
                raise RuntimeError(f"{delivery.key}: {delivery.error}")
        split_seconds = time.time() - started
        drained = mapping.wait_until_drained(sqs, timeout_s)
        finished = time.time()
    return JobRun(job_id, recipients, started, finished,
                  app.job_progress().status(bucket, job_id),
                  sent_mails(endpoint, mails_before), mapping.invocations(), drained,
                  split_seconds)
