"""S3 chores for the PHP tests, against moto's server; prints one JSON document.

s3.py <endpoint> create-bucket <bucket>
s3.py <endpoint> dump <bucket> [<prefix>]
    -> {"objects": {key: {"body_base64", "content_type", "sse"}}}, keys sorted
s3.py <endpoint> mails <bucket>
    -> what the batch files under queue/ hold, summed up (for tests of many mails,
       whose objects would not fit a dump): {"batch_files", "batch_ids" (sorted),
       "keys_match_ids", "mails", "distinct_mail_ids", "distinct_subjects",
       "subjects_sha256" (of the sorted subjects joined by LF)}
"""

import base64
import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3


def keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def dump(s3, bucket: str, prefix: str) -> dict:
    objects = {}
    for key in keys(s3, bucket, prefix):
        answer = s3.get_object(Bucket=bucket, Key=key)
        objects[key] = {
            "body_base64": base64.b64encode(answer["Body"].read()).decode("ascii"),
            "content_type": answer.get("ContentType"),
            "sse": answer.get("ServerSideEncryption"),
        }
    return {"objects": objects}


def mails(s3, bucket: str) -> dict:
    files = [
        key for key in keys(s3, bucket, "queue/")
        if key.endswith(".json") and not key.startswith("queue/attachments/")
    ]

    def read(key: str) -> dict:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(16) as pool:
        batches = list(pool.map(read, files))
    mail_ids = [mail["id"] for batch in batches for mail in batch["emails"]]
    subjects = sorted(mail["subject"] for batch in batches for mail in batch["emails"])
    return {
        "batch_files": len(files),
        "batch_ids": sorted(batch["batch_id"] for batch in batches),
        "keys_match_ids": all(
            key == f"queue/{batch['batch_id']}.json"
            for key, batch in zip(files, batches, strict=True)
        ),
        "mails": len(mail_ids),
        "distinct_mail_ids": len(set(mail_ids)),
        "distinct_subjects": len(set(subjects)),
        "subjects_sha256": hashlib.sha256("\n".join(subjects).encode()).hexdigest(),
    }


def main(endpoint: str, command: str, bucket: str, *rest: str) -> dict:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    if command == "create-bucket":
        s3.create_bucket(Bucket=bucket)
        return {"bucket": bucket}
    if command == "count":
        return {"count": len(keys(s3, bucket, rest[0] if rest else ""))}
    if command == "dump":
        return dump(s3, bucket, rest[0] if rest else "")
    if command == "mails":
        return mails(s3, bucket)
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
