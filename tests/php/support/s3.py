"""S3 chores for the PHP tests, against moto's server; prints one JSON document.

s3.py <endpoint> create-bucket <bucket>
s3.py <endpoint> dump <bucket> [<prefix>]
    -> {"objects": {key: {"body_base64", "content_type", "sse"}}}, keys sorted
"""

import base64
import json
import sys

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


def main(endpoint: str, command: str, bucket: str, *rest: str) -> dict:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    if command == "create-bucket":
        s3.create_bucket(Bucket=bucket)
        return {"bucket": bucket}
    if command == "count":
        return {"count": len(keys(s3, bucket, rest[0] if rest else ""))}
    if command == "dump":
        return dump(s3, bucket, rest[0] if rest else "")
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
