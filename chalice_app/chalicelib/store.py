"""Read batch files and their attachments from S3."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import AttachmentError, BatchTooLarge, MessageTooLarge, StorageUnavailable
from chalicelib.mime import SES_MAX_RAW_BYTES, encode_attachment, estimated_size
from chalicelib.model import Attachment, Mail

MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})
# Bytes of an object read at a time when it is streamed (job parts).
STREAM_CHUNK_BYTES = 1024 * 1024
# The largest batch file read (docs/batch-format.md). The plugin writes batches of
# 5 MB (POSTBAG_CHUNK_MAX_BYTES) or one mail of at most SES's 10 MB; parsing and
# sending a batch takes a few times its size, and the function has 512 MB.
MAX_BATCH_BYTES = 32 * 1024 * 1024


def is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in MISSING_CODES


def unavailable(exc: ClientError | BotoCoreError, what: str) -> StorageUnavailable:
    return StorageUnavailable(f"S3 failed while {what}: {exc}")


# What S3 answers a conditional write that lost to another writer.
WRITTEN_MEANWHILE = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


def put_unless(s3_client: Any, bucket: str, key: str, body: bytes, metadata: dict[str, str],
               keep: Callable[[dict[str, str]], bool]) -> bool:
    """Write ``key`` (JSON, with ``metadata``) unless the stored object's metadata says to
    ``keep`` it. ``True``: the stored object is ours now, or one to keep; ``False``: another
    writer came in between the look and the write (look again). A conditional write, so
    an older document never replaces a newer one whatever the order of the writers."""
    try:
        head = s3_client.head_object(Bucket=bucket, Key=key)
        if keep(head.get("Metadata", {})):
            return True
        condition = {"IfMatch": head["ETag"]}
    except ClientError as exc:
        if not is_missing(exc):
            raise unavailable(exc, f"looking at {key}") from exc
        condition = {"IfNoneMatch": "*"}
    except BotoCoreError as exc:
        raise unavailable(exc, f"looking at {key}") from exc
    try:
        s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                             Metadata=metadata, **condition)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in WRITTEN_MEANWHILE:
            return False
        raise unavailable(exc, f"writing {key}") from exc
    except BotoCoreError as exc:
        raise unavailable(exc, f"writing {key}") from exc
    return True


def s3_call(what: str, method: Callable[..., Any], **params: Any) -> Any:
    """``method(**params)``, with botocore's errors as ``StorageUnavailable`` saying ``what``."""
    try:
        return method(**params)
    except (ClientError, BotoCoreError) as exc:
        raise unavailable(exc, what) from exc


class BatchGone(Exception):
    """The batch object no longer exists (already quarantined or re-driven): nothing to do."""


class NotModified(Exception):
    """The object still has the ETag the caller holds (S3's 304)."""


def get_object(s3_client: Any, bucket: str, key: str, max_bytes: int | None = None,
               if_none_match: str | None = None) -> Any:
    """S3's GetObject answer for ``key`` (its body not read yet): ``BatchGone`` when it does
    not exist, ``NotModified`` when it still has the ETag ``if_none_match``,
    ``BatchTooLarge`` before reading a body over ``max_bytes``, ``StorageUnavailable``
    when S3 fails."""
    params = {"IfNoneMatch": if_none_match} if if_none_match else {}
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key, **params)
    except ClientError as exc:
        if if_none_match and exc.response.get("Error", {}).get("Code") in NOT_MODIFIED_CODES:
            raise NotModified(key) from exc
        if is_missing(exc):
            raise BatchGone(key) from exc
        raise unavailable(exc, f"reading {key}") from exc
    except BotoCoreError as exc:
        raise unavailable(exc, f"reading {key}") from exc
    if max_bytes is not None and response["ContentLength"] > max_bytes:
        response["Body"].close()
        raise BatchTooLarge(
            "(file)", key,
            f"{response['ContentLength']:,} bytes; the sender reads batches and manifests of "
            f"at most {max_bytes:,} (the plugin splits at POSTBAG_CHUNK_MAX_BYTES)",
        )
    return response


def read_body(response: Any, key: str) -> bytes:
    """A GetObject answer's whole body; ``StorageUnavailable`` when the connection drops."""
    try:
        return bytes(response["Body"].read())
    except BotoCoreError as exc:
        raise unavailable(exc, f"reading {key}") from exc


class BatchStore:
    """Reads what the plugin uploaded, through an S3 client made by the caller."""

    def __init__(self, s3_client: Any):
        self._s3 = s3_client

    def read_batch(self, bucket: str, key: str) -> tuple[bytes, datetime]:
        """The batch's bytes and upload time; ``BatchTooLarge`` before reading a body over
        ``MAX_BATCH_BYTES``."""
        response = get_object(self._s3, bucket, key, MAX_BATCH_BYTES)
        return read_body(response, key), response["LastModified"]

    def stream(self, bucket: str, key: str) -> Iterator[bytes]:
        """An object's body a chunk at a time (job parts: hashed and counted without
        holding them whole); ``BatchGone`` when it does not exist."""
        body = get_object(self._s3, bucket, key)["Body"]
        try:
            yield from body.iter_chunks(STREAM_CHUNK_BYTES)
        except BotoCoreError as exc:  # the connection dropped while reading
            raise unavailable(exc, f"reading {key}") from exc
        finally:
            body.close()

    def load_attachments(self, bucket: str, mail: Mail) -> list[tuple[Attachment, str]]:
        """Every attachment with its content as base64 text; refuses before reading past
        SES's size limit."""
        budget = SES_MAX_RAW_BYTES
        files = []
        for attachment in mail.attachments:
            content, size = attachment.content_base64, attachment.size
            if content is None or size is None:
                assert attachment.s3_key is not None  # an attachment is inline or a reference
                data = self._read_attachment(bucket, attachment.s3_key, mail.id)
                content, size = encode_attachment(data), len(data)
            budget -= estimated_size(size)
            if budget < 0:
                raise MessageTooLarge(
                    f"mail {mail.id}: attachments exceed SES's {SES_MAX_RAW_BYTES:,}-byte limit "
                    f"once encoded (at {attachment.filename})"
                )
            files.append((attachment, content))
        return files

    def _read_attachment(self, bucket: str, key: str, mail_id: str) -> bytes:
        try:
            response = get_object(self._s3, bucket, key)
        except BatchGone as exc:
            raise AttachmentError(f"mail {mail_id}: attachment {key} does not exist") from exc
        if estimated_size(response["ContentLength"]) > SES_MAX_RAW_BYTES:
            response["Body"].close()
            raise MessageTooLarge(
                f"mail {mail_id}: attachment {key} is {response['ContentLength']:,} bytes, "
                f"over SES's limit once encoded"
            )
        return read_body(response, key)
