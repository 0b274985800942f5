"""``make demo``'s suppression step: feedback from SES, an unsubscribe, and the next send.

A batch goes to four addresses; the stand-in's SES brings back what its mailbox
simulator would (a Delivery for ``ok@``, a Permanent Bounce for ``bounce@``, a
Complaint for ``complaint@``), which ``on_ses_event`` turns into suppressions.
Meanwhile ``reader@`` unsubscribes on the site: its inbox object goes through
``on_suppression_inbox``. ``publish_status`` (every minute on AWS) writes the export
and the feedback status. A second batch to the same four addresses is then sent to
``ok@`` alone: the receipt shows the other three ``suppressed``, none failed.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standin.aws import LocalAws
from standin.job_run import sent_mails
from standin.lambda_runtime import LambdaContext, LocalDispatcher, LocalSesEvents
from standin.schedules import scheduled_event

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PREFIX = "queue/suppression-demo-"
ADDRESSES = ("ok@example.net", "bounce@example.net", "complaint@example.net",
             "reader@example.net")


def _batch(s3: Any, bucket: str, n: int) -> str:
    """A batch of one mail per address, as the plugin writes it."""
    doc = json.loads((FIXTURES / "batches/plain.json").read_text(encoding="utf-8"))
    template = doc["emails"][0]
    batch_id = f"suppression-demo-{n}"
    doc.update(batch_id=batch_id, created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    doc["meta"]["bcc"] = []
    doc["emails"] = [{**copy.deepcopy(template), "id": str(uuid.uuid4()), "to": [address],
                      "subject": f"Suppression demo, send {n}"} for address in ADDRESSES]
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}{n}.json", Body=json.dumps(doc).encode())
    return batch_id


def _unsubscribe(s3: Any, bucket: str, address: str) -> str:
    """What the plugin's unsubscribe endpoint writes (docs/suppression.md)."""
    key = f"suppressions/inbox/{uuid.uuid4()}.json"
    change = {"version": 1, "action": "add", "scope": "all", "address": address,
              "reason": "unsubscribe", "source": "site", "site": "https://blog.example.org",
              "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(change).encode())
    return key


def _receipt(s3: Any, bucket: str, batch_id: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=f"receipts/{batch_id}.json")["Body"]
                      .read())


def run(aws: LocalAws, s3: Any, app: Any, events: LocalSesEvents,
        dispatcher: LocalDispatcher) -> bool:
    """True when the second send reached ``ok@`` alone, the others suppressed, none failed."""
    bucket = app.BUCKET
    print(f"\nSuppression: one mail each to {', '.join(ADDRESSES)}")
    first = _batch(s3, bucket, 1)
    dispatcher.run()
    print(f"send 1: {_receipt(s3, bucket, first)['counts']}; SES events delivered to "
          f"on_ses_event: {events.deliver()}")
    _unsubscribe(s3, bucket, "reader@example.net")
    dispatcher.run()  # on_suppression_inbox
    app.publish_status(scheduled_event(), LambdaContext(60.0, "postbag-local-publish_status"))
    export = json.loads(s3.get_object(Bucket=bucket, Key="suppressions/export.json")["Body"]
                        .read())
    for entry in export["entries"]:
        print(f"  suppressed {entry['address']:<24} {entry['scope']:<6} {entry['reason']:<12} "
              f"from {entry['source']}")
    feedback = json.loads(s3.get_object(Bucket=bucket, Key="status/feedback.json")["Body"]
                          .read())
    today = feedback["days"][0]
    print(f"status/feedback.json today: sent {today['sent']}, delivered {today['delivered']}, "
          f"bounced {today['bounced']}, complained {today['complained']}")
    before = len(sent_mails(aws.endpoint))
    second = _batch(s3, bucket, 2)
    dispatcher.run()
    receipt = _receipt(s3, bucket, second)
    reached = sorted(a for m in sent_mails(aws.endpoint, before) for a in m["destination"])
    print(f"send 2: {receipt['counts']}; SES got mail for {', '.join(reached) or 'nobody'}")
    ok = reached == ["ok@example.net"] and receipt["counts"] == {"sent": 1, "suppressed": 3}
    print(f"check: {'suppressed addresses skipped, none failed' if ok else 'NOT as expected'}")
    return ok
