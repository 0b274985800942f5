"""moto's server with signature checking on, for the PHP S3 client tests.

    moto-s3.py <endpoint> iam-user <bucket>
        -> {"access_key_id": ..., "secret_access_key": ...}

moto checks signatures only against keys it issued, and with checking on it
refuses the unsigned calls that would create one: /moto-api/reset-auth lets a
set number through, exactly the three iam-user makes. The bucket is then
created with the new key, which also proves the key works. The tests read
objects back with support/s3.py's `dump`, as that key.
"""

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


if __name__ == "__main__":
    endpoint, command, *args = sys.argv[1:]
    print(json.dumps({"iam-user": iam_user}[command](endpoint, *args)))
