"""The stand-in's DynamoDB copes with a 100,000-recipient job's ledger and stays atomic.

moto 5.2 undoes a cancelled ``TransactWriteItems`` from a deep copy of the whole
table per item (PITFALLS.md: a server with ~30,000 ledger items grew past
19 GB). ``standin.server`` undoes it from an undo log of the items the
transaction touched, one request at a time. These tests hold it to that:
memory and time per transaction stay flat while the table grows past 20,000
items, a cancelled transaction undoes only its own writes, and racing callers
see whole transactions.
"""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.config import Config

from chalicelib.ledger import create_table
from standin.aws import LocalAws

pytestmark = pytest.mark.server

TABLE = "standin-ledger"
ITEMS = 24_000
CHUNK = 100  # DynamoDB's most items in one transaction, as the ledger's claims use


def rss_mb(pid: int) -> float:
    """The server's resident memory, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def claim(key: str, status: str = "INPROGRESS") -> dict:
    """One item of a claim transaction: put the key if nobody holds it, as the ledger does."""
    return {"Put": {"TableName": TABLE,
                    "Item": {"id": {"S": key}, "status": {"S": status}},
                    "ConditionExpression": "attribute_not_exists(id)"}}


def stored(dynamodb, keys: list[str]) -> dict[str, str]:
    """Key → status of the keys present (consistent reads)."""
    found: dict[str, str] = {}
    for start in range(0, len(keys), CHUNK):
        answer = dynamodb.batch_get_item(RequestItems={TABLE: {
            "Keys": [{"id": {"S": k}} for k in keys[start:start + CHUNK]],
            "ConsistentRead": True}})
        for item in answer["Responses"][TABLE]:
            found[item["id"]["S"]] = item["status"]["S"]
    return found


def cancelled(dynamodb, items: list[dict]) -> bool:
    try:
        dynamodb.transact_write_items(TransactItems=items)
    except dynamodb.exceptions.TransactionCanceledException:
        return True
    return False


@pytest.fixture(scope="module")
def aws():
    with LocalAws() as server:
        client = boto3.client("dynamodb", endpoint_url=server.endpoint,
                              config=Config(retries={"total_max_attempts": 1}))
        create_table(client, TABLE)
        yield server, client


def test_memory_and_time_stay_flat_as_the_ledger_grows_past_20000_items(aws):
    server, dynamodb = aws
    timings: list[float] = []
    rss_at_start = rss_mb(server.pid)
    for number in range(ITEMS // CHUNK):
        keys = [f"grow:{number}:{i}" for i in range(CHUNK)]
        started = time.perf_counter()
        dynamodb.transact_write_items(TransactItems=[claim(k) for k in keys])
        # A cancelled claim after each: the costly path in moto (a copy per item).
        assert cancelled(dynamodb, [claim(f"grow:{number}:fresh")] + [claim(k) for k in keys[1:]])
        timings.append(time.perf_counter() - started)
    growth = rss_mb(server.pid) - rss_at_start
    first, last = sorted(timings[:20])[10], sorted(timings[-20:])[10]
    # 24,000 small items take tens of MB in moto; a table copy per item took GBs.
    assert growth < 300, f"server grew {growth:.0f} MB"
    assert last < 4 * first + 0.05, f"median transaction {first * 1000:.0f} → {last * 1000:.0f} ms"
    assert dynamodb.describe_table(TableName=TABLE)["Table"]["ItemCount"] >= ITEMS
    assert not stored(dynamodb, [f"grow:{n}:fresh" for n in range(ITEMS // CHUNK)])


def test_a_cancelled_transaction_undoes_only_its_own_writes(aws):
    _, dynamodb = aws
    dynamodb.transact_write_items(TransactItems=[claim("undo:held", "COMPLETED"),
                                                 claim("undo:other", "COMPLETED"),
                                                 claim("undo:deleted", "COMPLETED")])
    items = [
        claim("undo:new-1"),
        {"Update": {"TableName": TABLE, "Key": {"id": {"S": "undo:other"}},
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":s": {"S": "CHANGED"}}}},
        {"Delete": {"TableName": TABLE, "Key": {"id": {"S": "undo:deleted"}}}},
        claim("undo:held"),  # fails its condition: the whole transaction is cancelled
        claim("undo:new-2"),
    ]
    assert cancelled(dynamodb, items)
    assert stored(dynamodb, [f"undo:{k}" for k in ("new-1", "new-2", "held", "other", "deleted")]) \
        == {"undo:held": "COMPLETED", "undo:other": "COMPLETED", "undo:deleted": "COMPLETED"}


def test_racing_transactions_are_each_all_or_nothing(aws):
    """Eight callers claim the same 50 shared keys, each with 50 keys of its own."""
    server, _ = aws
    callers = 8
    shared = [f"race:shared:{i}" for i in range(50)]
    won: dict[int, bool] = {}

    def caller(number: int) -> None:
        client = boto3.client("dynamodb", endpoint_url=server.endpoint)
        own = [claim(f"race:{number}:{i}", str(number)) for i in range(50)]
        won[number] = not cancelled(client, [claim(k, str(number)) for k in shared] + own)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    _, dynamodb = aws
    winners = [n for n, ok in won.items() if ok]
    assert len(won) == callers and len(winners) == 1
    holders = set(stored(dynamodb, shared).values())
    assert holders == {str(winners[0])}
    for number in range(callers):
        own = stored(dynamodb, [f"race:{number}:{i}" for i in range(50)])
        assert len(own) == (50 if number in winners else 0), number
