"""The suppression list: addresses the sender never mails again, per scope.

One DynamoDB item per address in the stage's suppression table, keyed by the
address hash (``address_hash``: SHA-256 of the normalised address, ``normalise``),
with one attribute per scope (``s:all``, ``s:list:<name>``) holding the latest
change: ``{"state": "add"|"remove", "reason", "source", "at"}``. A scope is
suppressed while its latest change is an ``add``. A change is written only when
it is newer than the one stored (``at``, compared as epoch milliseconds), so a
replayed inbox document does nothing and an older remove never undoes a newer
add. Transient bounces are kept on an item of their own (``soft#<address_hash>``: each
bounce once, by SES's feedback id; expiring ``soft_bounce_days`` after the latest) until
``soft_bounce_limit`` within ``soft_bounce_days`` suppress the address.

Why its own table and not the ledger's: the export (``suppressions/export.json``)
and ``postbag suppression list`` list every entry, which is a Scan; a Scan of the
ledger's table would read every mail's record as well.

The check before sending (``suppressed``) is one BatchGetItem round per batch or
work item (100 keys a call, one key per distinct address), never a call per mail.
When the lookup fails the caller sends nothing: ``SuppressionUnavailable`` is
transient, and the batch is retried or the work item handed back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import dynamo
from chalicelib.errors import TransientError
from chalicelib.ledger import TTL_ATTRIBUTE
from chalicelib.retry import RetryPolicy

SCOPE_ALL = "all"
ADD, REMOVE = "add", "remove"
MAX_KEYS_PER_CALL = 100  # BatchGetItem's limit
LOOKUP_TIMEOUT_SECONDS = 5.0  # for every chunk's unprocessed keys together


class SuppressionUnavailable(TransientError):
    """The suppression table could not be read or written: nothing is sent blind."""


# What both sides strip: PHP's trim() set. ``str.strip()`` would also take NBSP and
# U+2000..U+200A, and the plugin would hash such an address differently.
_ASCII_WHITESPACE = " \t\n\r\x0b\x00"


def normalise(address: str) -> str:
    """The address as the list keys it: ASCII whitespace stripped, then Unicode full case
    folding (``casefold``: ß → ss, final ς → σ, as PHP's MB_CASE_FOLD), docs/suppression.md."""
    return address.strip(_ASCII_WHITESPACE).casefold()


def address_hash(address: str) -> str:
    """Lower-case hex SHA-256 of the normalised address's UTF-8 bytes."""
    return hashlib.sha256(normalise(address).encode("utf-8")).hexdigest()


def list_scope(list_name: str) -> str:
    return f"list:{list_name}"


def _attribute(scope: str) -> str:
    return f"s:{scope}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@dataclass(frozen=True)
class Change:
    """One add or remove, from the site's inbox, SES's feedback or the operator."""

    action: str  # ADD or REMOVE
    scope: str  # SCOPE_ALL or list:<name>
    address: str
    reason: str
    source: str  # site, ses, operator
    at: datetime


@dataclass(frozen=True)
class Entry:
    """A suppressed address in one scope, as the export and the CLI list it."""

    address_hash: str
    address: str
    scope: str
    reason: str
    source: str
    at: str

    def document(self) -> dict[str, str]:
        return {"address_hash": self.address_hash, "address": self.address, "scope": self.scope,
                "reason": self.reason, "source": self.source, "at": self.at}


class SuppressionStore:
    """Reads and writes the suppression table; safe to share between threads."""

    def __init__(self, dynamodb_client: Any, table: str, retry: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._client = dynamodb_client
        self.table = table
        self._retry = retry or RetryPolicy()
        self._clock = clock

    def _call(self, operation: str, **params: Any) -> Any:
        """One call; a failed condition is the caller's, anything else transient."""
        return dynamo.call(self._client, operation, SuppressionUnavailable,
                           f"suppression table {operation}", (dynamo.CONDITION_FAILED,),
                           **params)

    # --- the check before sending ------------------------------------------------------

    def suppressed(self, addresses: Iterable[str], list_name: str = "") -> set[str]:
        """The normalised ``addresses`` suppressed for all mail or for ``list_name``."""
        by_hash = {address_hash(a): normalise(a) for a in addresses}
        scopes = [SCOPE_ALL] + ([list_scope(list_name)] if list_name else [])
        attributes = [_attribute(scope) for scope in scopes]
        names = {"#id": "id", **{f"#s{i}": name for i, name in enumerate(attributes)}}
        projection = ", ".join(names)
        hashes = list(by_hash)
        found: set[str] = set()
        deadline = self._clock() + LOOKUP_TIMEOUT_SECONDS
        for start in range(0, len(hashes), MAX_KEYS_PER_CALL):
            keys = [{"id": {"S": h}} for h in hashes[start:start + MAX_KEYS_PER_CALL]]
            request = {"Keys": keys, "ProjectionExpression": projection,
                       "ExpressionAttributeNames": names}
            for item in self._get(request, deadline):
                if any(_active(item.get(name)) for name in attributes):
                    found.add(by_hash[item["id"]["S"]])
        return found

    def _get(self, request: dict[str, Any], deadline: float) -> Iterator[dict[str, Any]]:
        """Every item of one BatchGetItem request, its unprocessed keys asked again with
        backoff until ``deadline``."""
        attempt = 0
        while True:
            answer = self._call("batch_get_item", RequestItems={self.table: request})
            yield from answer.get("Responses", {}).get(self.table, [])
            left = answer.get("UnprocessedKeys", {}).get(self.table)
            if not left:
                return
            if self._clock() >= deadline:
                raise SuppressionUnavailable(
                    f"{len(left['Keys'])} suppression lookup(s) kept coming back unprocessed")
            self._retry.pause(attempt)
            attempt += 1
            request = left

    # --- changes -----------------------------------------------------------------------

    def apply(self, change: Change) -> bool:
        """Write ``change`` unless the stored one for its scope is as new or newer; whether
        it was written."""
        attribute = _attribute(change.scope)
        at_ms = int(change.at.timestamp() * 1000)
        entry = {"state": {"S": change.action}, "reason": {"S": change.reason},
                 "source": {"S": change.source}, "at": {"S": rfc3339(change.at)},
                 "at_ms": {"N": str(at_ms)}}
        try:
            self._call(
                "update_item", TableName=self.table,
                Key={"id": {"S": address_hash(change.address)}},
                UpdateExpression="SET #s = :entry, #address = :address",
                ConditionExpression="attribute_not_exists(#s) OR #s.at_ms < :at",
                ExpressionAttributeNames={"#s": attribute, "#address": "address"},
                ExpressionAttributeValues={":entry": {"M": entry}, ":at": {"N": str(at_ms)},
                                           ":address": {"S": normalise(change.address)}},
            )
        except ClientError:  # ConditionalCheckFailed: as new or newer stored already
            return False
        return True

    def soft_bounce(self, address: str, feedback_id: str, at: datetime, limit: int,
                    days: float) -> bool:
        """Note a transient bounce; whether ``limit`` of them fell within ``days`` of ``at``
        (the caller then suppresses the address). Each is kept once, by SES's feedback id,
        so a redelivered notification counts nothing twice; older ones are dropped as it
        goes, and the item expires ``days`` after the latest (``_soft_key``)."""
        key = {"id": {"S": _soft_key(address)}}
        answer = self._call(
            "update_item", TableName=self.table, Key=key,
            UpdateExpression="ADD #bounces :this SET #expiry = if_not_exists(#expiry, :expiry)",
            ExpressionAttributeNames={"#bounces": "bounces", "#expiry": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":this": {"SS": [f"{int(at.timestamp() * 1000)}|{feedback_id}"]},
                ":expiry": {"N": str(int(at.timestamp() + days * 86400))}},
            ReturnValues="ALL_NEW")
        stored = answer["Attributes"]["bounces"]["SS"]
        since_ms = (at.timestamp() - days * 86400) * 1000
        old = [b for b in stored if int(b.split("|", 1)[0]) <= since_ms]
        latest = max(int(b.split("|", 1)[0]) for b in stored) / 1000
        expiry = str(int(latest + days * 86400))
        if old or answer["Attributes"][TTL_ATTRIBUTE]["N"] != expiry:
            self._call("update_item", TableName=self.table, Key=key,
                       UpdateExpression="SET #expiry = :expiry"
                                        + (" DELETE #bounces :old" if old else ""),
                       ExpressionAttributeNames={"#expiry": TTL_ATTRIBUTE,
                                                 **({"#bounces": "bounces"} if old else {})},
                       ExpressionAttributeValues={":expiry": {"N": expiry},
                                                  **({":old": {"SS": old}} if old else {})})
        return len(stored) - len(old) >= limit

    # --- listing -----------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every suppressed address and scope (a Scan of the table, page by page)."""
        found: list[Entry] = []
        params: dict[str, Any] = {"TableName": self.table}
        while True:
            page = self._call("scan", **params)
            for item in page.get("Items", []):
                found.extend(_entries(item))
            if "LastEvaluatedKey" not in page:
                return sorted(found, key=lambda e: (e.address, e.scope))
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def export(self, now: datetime) -> dict[str, Any]:
        """``suppressions/export.json`` (fixtures/suppression-v1.schema.json)."""
        return {"version": 1, "generated_at": rfc3339(now),
                "entries": [entry.document() for entry in self.entries()]}


def _soft_key(address: str) -> str:
    """The item of an address's transient bounces: its own, so that its TTL never takes a
    suppression with it, and without the plain address (nothing to show until it counts)."""
    return f"soft#{address_hash(address)}"


def _active(value: dict[str, Any] | None) -> bool:
    return value is not None and value["M"]["state"]["S"] == ADD


def _entries(item: dict[str, Any]) -> Iterator[Entry]:
    for name, value in item.items():
        if name.startswith("s:") and _active(value):
            m = value["M"]
            yield Entry(item["id"]["S"], item.get("address", {}).get("S", ""), name[2:],
                        m["reason"]["S"], m["source"]["S"], m["at"]["S"])
