"""What every run of the sender under test starts from: no real account, no real endpoint.

Used by ``tests/conftest.py`` and by the PHP contract tests' ``deliver_batches.py``.
"""

from __future__ import annotations

import os

import boto3


def use_safe_env(bucket: str, function_name: str) -> None:
    """Dummy credentials and the sender's settings, set before any client (or ``app.py``,
    which reads its settings at import) is made."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "POSTBAG_BUCKET": bucket,
            "POSTBAG_ALLOWED_SENDERS": "example.org",
            "POSTBAG_MAX_SEND_RATE": "1000",
            # chalice.test.Client gives the handler a 3-second Lambda context.
            "POSTBAG_DEADLINE_MARGIN_MS": "1000",
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "POWERTOOLS_METRICS_NAMESPACE": "Postbag",
            "POWERTOOLS_SERVICE_NAME": "postbag",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


def prepare_sender_aws(app) -> object:
    """Inside a moto mock: the bucket, a verified sender domain and the ledger table the
    handler in ``app`` expects, with its clients made afresh; returns the S3 client."""
    from chalicelib.ledger import create_table

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=os.environ["POSTBAG_BUCKET"])
    boto3.client("ses").verify_domain_identity(Domain="example.org")
    create_table(boto3.client("dynamodb"), app.SETTINGS.ledger_table)
    create_table(boto3.client("dynamodb"), app.SETTINGS.suppression_table)  # the same key
    app.stages.cache_clear()  # its clients must be made inside the mock
    return s3
