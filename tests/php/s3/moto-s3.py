"""moto's server with signature checking on, for the PHP S3 client tests.

    moto-s3.py <endpoint> iam-user <bucket>
        -> {"access_key_id": ..., "secret_access_key": ...}
    moto-s3.py <endpoint> objects <bucket>       (credentials from AWS_* env)
        -> {key: {"body_base64", "content_type", "sse"}} for every object

moto checks signatures only against keys it issued, and with checking on it
refuses the unsigned calls that would create one: /moto-api/reset-auth lets a
set number through, exactly the three iam-user makes. The bucket is then
created with the new key, which also proves the key works. `objects` reads
everything back in one process (one boto3 start-up, not one per key).
"""

import base64
import json
import sys
import urllib.request

import boto3

UNSIGNED_CALLS = 3  # create_user, put_user_policy, create_access_key
USER = "postbag-php-test"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def iam_user(endpoint: str, bucket: str) -> dict:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=str(UNSIGNED_CALLS).encode(),
        headers={"Content-Type": "text/plain"},  # not form-encoded, or moto reads an empty body
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="unsigned",
        aws_secret_access_key="unsigned",
    )
    iam.create_user(UserName=USER)
    iam.put_user_policy(UserName=USER, PolicyName="s3", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName=USER)["AccessKey"]

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    s3.create_bucket(Bucket=bucket)
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def objects(endpoint: str, bucket: str) -> dict:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            answer = s3.get_object(Bucket=bucket, Key=item["Key"])
            found[item["Key"]] = {
                "body_base64": base64.b64encode(answer["Body"].read()).decode("ascii"),
                "content_type": answer.get("ContentType"),
                "sse": answer.get("ServerSideEncryption"),
            }
    return found


if __name__ == "__main__":
    endpoint, command, *args = sys.argv[1:]
    print(json.dumps({"iam-user": iam_user, "objects": objects}[command](endpoint, *args)))
