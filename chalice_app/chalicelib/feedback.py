"""SES's own events, as SNS delivers them: what the ledger needs from them.

The configuration set Postbag sends with publishes each mail's events to an
SNS topic; each notification is one SES event (JSON) whose ``mail.tags``
carry the ledger key's digest under ``postbag-key``. A ``Send`` event is
SES's evidence that it accepted the mail, which settles a send whose answer
was lost (``ledger.py``, "evidence"). Other events and untagged mail (sent
by something else through the same set) are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from chalicelib.config import LEDGER_KEY_TAG
from chalicelib.observe import logger


def sends(records: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(ledger key digest, SES MessageId) for each Send event in SNS records."""
    for record in records:
        try:
            event = json.loads(record["Sns"]["Message"])
            if event.get("eventType") != "Send":
                continue
            mail = event["mail"]
            tags = mail.get("tags", {}).get(LEDGER_KEY_TAG, [])
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            logger.warning("not an SES event, skipped", extra={"error": repr(exc)})
            continue
        if tags and isinstance(mail.get("messageId"), str):
            yield str(tags[0]), mail["messageId"]
