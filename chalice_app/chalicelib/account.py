"""The SES account as the sender last saw it, written where WordPress may read it.

Whenever the sender reads ``GetSendQuota`` (``ratelimit.account_rate`` at a cold
start, ``quota.QuotaWatch`` once a minute), it hands the answer to
``AccountReport.publish``, which writes ``status/account.json``::

    {"version": 1, "checked_at": "2026-11-30T01:00:00Z", "max_send_rate": 14.0,
     "max_24_hour_send": 50000.0, "sent_last_24_hours": 1234.0,
     "production_access": true, "sending_enabled": true}

``production_access`` and ``sending_enabled`` come from SES v2's ``GetAccount``
(``null`` when it cannot be read). Each instance writes at most once a
``min_interval`` (a minute): ``GetAccount`` is one of SES's non-send calls,
limited to one a second per account. Sending never depends on it: a failure is
logged and the next reading tries again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.config import ACCOUNT_STATUS_KEY
from chalicelib.observe import logger

MIN_INTERVAL_SECONDS = 60.0
VERSION = 1


def document(quota: Mapping[str, Any], account: Mapping[str, Any] | None,
             checked_at: datetime) -> dict[str, Any]:
    """The account document from a ``GetSendQuota`` answer and a ``GetAccount`` one
    (``None``: not read)."""
    account = account or {}
    return {
        "version": VERSION,
        "checked_at": checked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "max_send_rate": float(quota["MaxSendRate"]),
        "max_24_hour_send": float(quota["Max24HourSend"]),
        "sent_last_24_hours": float(quota["SentLast24Hours"]),
        "production_access": account.get("ProductionAccessEnabled"),
        "sending_enabled": account.get("SendingEnabled"),
    }


class AccountReport:
    """Writes ``status/account.json`` from quota readings, at most once a ``min_interval``."""

    def __init__(
        self,
        s3_client: Any,
        sesv2_client: Any,
        bucket: str,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        min_interval: float = MIN_INTERVAL_SECONDS,
    ):
        self._s3, self._sesv2, self._bucket = s3_client, sesv2_client, bucket
        self._clock, self._now, self._min_interval = clock, now, min_interval
        self._last = -float("inf")
        self._lock = threading.Lock()

    def publish(self, quota: Mapping[str, Any]) -> None:
        """Write the document for ``quota`` unless one was written (or tried) lately."""
        with self._lock:
            if self._clock() - self._last < self._min_interval:
                return
            self._last = self._clock()
        try:
            body = json.dumps(document(quota, self._account(), self._now()))
            self._s3.put_object(Bucket=self._bucket, Key=ACCOUNT_STATUS_KEY,
                                Body=body.encode("utf-8"), ContentType="application/json")
        except (ClientError, BotoCoreError, KeyError, ValueError) as exc:
            # Only a report: the next reading tries again.
            logger.warning("cannot write the account status", extra={"error": str(exc)})

    def _account(self) -> dict[str, Any] | None:
        try:
            answer: dict[str, Any] = self._sesv2.get_account()
        except Exception as exc:  # noqa: BLE001
            # Whatever goes wrong here is the report's, never the send's (an in-process
            # stand-in such as moto's raises NotImplementedError for GetAccount).
            logger.warning("cannot read SES's account details", extra={"error": repr(exc)})
            return None
        return answer
