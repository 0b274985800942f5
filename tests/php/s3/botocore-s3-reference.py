"""What botocore sends for S3 PutObject and GetObject: the reference for the PHP signer.

Reads {"time": <unix>, "cases": [{"name", "operation" ("PutObject", the
default, or "GetObject"), "region", "bucket", "key", "body_base64",
"content_type", "sse", "kms_key_id", "access_key", "secret", "token",
"path_style", "endpoint"}]} on stdin and prints {name: {"url", "headers"}}
with the headers of the request boto3's own put_object or get_object would
send at that time (nothing is sent: the request is caught just before it
would leave). A GetObject case uses only the addressing, key and credentials.
"""

import base64
import datetime
import json
import sys

import boto3
import botocore.auth
from botocore.config import Config


class Caught(Exception):
    """Carries the finished request out of botocore's send path."""

    def __init__(self, request):
        super().__init__("request caught")
        self.request = request


def catch(request, **_):
    raise Caught(request)


def request(case):
    session = boto3.session.Session(
        aws_access_key_id=case["access_key"],
        aws_secret_access_key=case["secret"],
        aws_session_token=case.get("token"),
        region_name=case["region"],
    )
    config = Config(
        s3={
            "addressing_style": "path" if case["path_style"] else "virtual",
            "us_east_1_regional_endpoint": "regional",
        },
        # Flexible checksums add x-amz-checksum-* (PutObject) and
        # x-amz-checksum-mode (GetObject) headers our client doesn't send.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 1},
    )
    client = session.client("s3", endpoint_url=case.get("endpoint") or None, config=config)
    operation = case.get("operation", "PutObject")
    client.meta.events.register(f"before-send.s3.{operation}", catch)
    if operation == "GetObject":
        return caught(client.get_object, {"Bucket": case["bucket"], "Key": case["key"]})
    params = {
        "Bucket": case["bucket"],
        "Key": case["key"],
        "Body": base64.b64decode(case["body_base64"]),
        "ContentType": case["content_type"],
        "ServerSideEncryption": case["sse"],
    }
    if case.get("kms_key_id"):
        params["SSEKMSKeyId"] = case["kms_key_id"]
    return caught(client.put_object, params)


def caught(call, params):
    """The request ``call(**params)`` would send."""
    try:
        call(**params)
    except Caught as stop:
        headers = {
            name: value.decode() if isinstance(value, bytes) else value
            for name, value in stop.request.headers.items()
        }
        return {"url": stop.request.url, "headers": headers}
    raise SystemExit(f"{call.__name__} was not caught before sending")


def main():
    spec = json.load(sys.stdin)
    now = datetime.datetime.fromtimestamp(spec["time"], datetime.UTC).replace(tzinfo=None)
    botocore.auth.get_current_datetime = lambda *args, **kwargs: now
    print(json.dumps({case["name"]: request(case) for case in spec["cases"]}))


if __name__ == "__main__":
    main()
