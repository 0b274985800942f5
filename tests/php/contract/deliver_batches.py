"""Plugin batches through the whole sender: the Lambda handler under moto, in process.

Reads JSON on stdin, {"objects": {s3 key: base64 bytes}} (batch files and
large attachments, as the plugin uploaded them), puts them in a bucket, and
delivers each batch's object-created event to ``on_batch_uploaded`` twice
(Lambda retries and S3 may deliver an event again). Prints what SES was given
(through which API, envelope recipients, To, subject, attachment digests) and the
receipts the sender had written after each round.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from urllib.parse import quote_plus

from tests.support.safe_env import prepare_sender_aws, use_safe_env

# The sender reads its settings when app.py is imported.
use_safe_env(bucket="postbag-contract", function_name="postbag-contract-on_batch_uploaded")
# The sender's logger and metrics write to stdout, which is for our answer alone.
ANSWER, sys.stdout = sys.stdout, sys.stderr

from chalice.test import Client  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.ses.models import RawMessage, ses_backends  # noqa: E402

import app  # noqa: E402
from chalicelib.config import RECEIPTS_PREFIX  # noqa: E402

BUCKET = os.environ["POSTBAG_BUCKET"]


def _raw(sent) -> dict:
    message = BytesParser(policy=policy.default).parsebytes(sent.raw_data.encode("ascii"))
    return {
        "api": "SendRawEmail",
        "destinations": sorted(addr for _, addr in getaddresses(sent.destinations)),
        "to": [addr for _, addr in getaddresses(message.get_all("To", []))],
        "subject": str(message["Subject"]),
        "attachments": {
            part.get_filename(): hashlib.sha256(part.get_payload(decode=True)).hexdigest()
            for part in message.iter_attachments()
        },
    }


def _simple(sent) -> dict:
    kinds = sent.destinations
    everyone = [
        a for kind in ("ToAddresses", "CcAddresses", "BccAddresses") for a in kinds.get(kind, [])
    ]
    return {
        "api": "SendEmail",
        "destinations": sorted(addr for _, addr in getaddresses(everyone)),
        "to": [addr for _, addr in getaddresses(kinds.get("ToAddresses", []))],
        "subject": sent.subject,
        "attachments": {},
    }


def _receipts(s3, prefix: str) -> dict:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: json.loads(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
        for item in listing
    }


def deliver(objects: dict[str, bytes]) -> dict:
    with mock_aws():
        s3 = prepare_sender_aws(app)
        for key, body in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        batches = [key for key in objects if key.endswith(".json")]
        receipts = []
        with Client(app.app) as client:
            for _ in range(2):
                for key in batches:
                    event = client.events.generate_s3_event(BUCKET, quote_plus(key))
                    client.lambda_.invoke("on_batch_uploaded", event)
                receipts.append(_receipts(s3, RECEIPTS_PREFIX))
        sent = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
        return {
            "sent": [_raw(m) if isinstance(m, RawMessage) else _simple(m) for m in sent],
            "receipts": receipts,
        }


def main() -> None:
    request = json.load(sys.stdin)
    objects = {key: base64.b64decode(body) for key, body in request["objects"].items()}
    json.dump(deliver(objects), ANSWER)


if __name__ == "__main__":
    main()
