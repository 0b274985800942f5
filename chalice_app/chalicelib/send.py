"""Hand one mail to SES: ``SendEmail`` when it is plain, ``SendRawEmail`` otherwise.

botocore's errors are translated here, at the boundary, into the classes of
``errors.py`` so the rest of the sender decides on the class alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import formataddr
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, SSLError

from chalicelib.config import LEDGER_KEY_TAG
from chalicelib.errors import (
    PostbagError,
    RejectedBySes,
    SendAmbiguous,
    SendingPaused,
    SesUnavailable,
    Throttled,
)
from chalicelib.html_text import text_body
from chalicelib.ledger import key_digest
from chalicelib.model import Address, Mail, Meta

THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "MaxSendRateExceeded"}
)
PAUSED_CODES = frozenset(
    {"AccountSendingPausedException", "ConfigurationSetSendingPausedException", "SendingPaused"}
)
UNAVAILABLE_CODES = frozenset(
    {"ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout"}
)


def translate(exc: ClientError | BotoCoreError) -> PostbagError:
    """The Postbag error for a botocore error from SES."""
    if isinstance(exc, HTTPClientError | SSLError):
        # A read timeout, a connection closed or a TLS error mid-answer: the
        # request may have been sent and accepted.
        return SendAmbiguous(f"SES may have sent it: {exc}")
    if isinstance(exc, BotoCoreError):
        # No connection was made (refused, DNS, connect timeout), or the request
        # never left (credentials, parameters): nothing reached SES.
        return SesUnavailable(f"SES could not be reached: {exc}")
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in PAUSED_CODES or "quota exceeded" in message.lower():
        return SendingPaused(f"{code}: {message}")
    if code in THROTTLING_CODES:
        return Throttled(f"{code}: {message}")
    if code in UNAVAILABLE_CODES or status >= 500:
        return SesUnavailable(f"{code}: {message}")
    return RejectedBySes(f"{code}: {message}")


def _mailbox(address: Address) -> str:
    # SES wants non-ASCII display names as RFC 2047 encoded words.
    return formataddr(address, charset="utf-8")


def _mailboxes(addresses: Sequence[Address]) -> list[str]:
    return [_mailbox(a) for a in addresses]


class SesSender:
    """Sends mails through an SES (v1) client made by the caller."""

    def __init__(self, ses_client: Any):
        self._ses = ses_client

    def _common(self, meta: Meta, ledger_key: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"Source": _mailbox(meta.sender)}
        if meta.configuration_set:
            extra["ConfigurationSetName"] = meta.configuration_set
        tags = [{"Name": name, "Value": value} for name, value in meta.tags]
        if ledger_key is not None:
            # SES's Send event carries it back to the ledger (ledger.py, "evidence").
            tags.append({"Name": LEDGER_KEY_TAG, "Value": key_digest(ledger_key)})
        if tags:
            extra["Tags"] = tags
        return extra

    def _call(self, method: Any, **params: Any) -> str:
        try:
            return method(**params)["MessageId"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc) from exc

    def send_simple(self, mail: Mail, meta: Meta, ledger_key: str | None = None) -> str:
        """``SendEmail``: HTML and text parts, Cc, Bcc and Reply-To without building MIME."""
        body: dict[str, Any] = {}
        text = text_body(mail.html, mail.text)
        if text is not None:
            body["Text"] = {"Data": text, "Charset": "UTF-8"}
        if mail.html is not None:
            body["Html"] = {"Data": mail.html, "Charset": "UTF-8"}
        destination = {}
        if mail.to:
            destination["ToAddresses"] = _mailboxes(mail.to)
        if meta.cc:
            destination["CcAddresses"] = _mailboxes(meta.cc)
        if meta.bcc:
            destination["BccAddresses"] = _mailboxes(meta.bcc)
        params = self._common(meta, ledger_key)
        if meta.reply_to:
            params["ReplyToAddresses"] = _mailboxes(meta.reply_to)
        message = {"Subject": {"Data": mail.subject, "Charset": "UTF-8"}, "Body": body}
        return self._call(self._ses.send_email, Destination=destination, Message=message, **params)

    def send_raw(
        self, mail: Mail, meta: Meta, raw: bytes, ledger_key: str | None = None
    ) -> str:
        """``SendRawEmail``: every recipient, Bcc included, goes in ``Destinations``."""
        destinations = [addr for _, addr in (*mail.to, *meta.cc, *meta.bcc)]
        return self._call(
            self._ses.send_raw_email,
            Destinations=destinations,
            RawMessage={"Data": raw},
            **self._common(meta, ledger_key),
        )
