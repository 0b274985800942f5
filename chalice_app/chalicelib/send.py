"""Hand one mail to SES: ``SendEmail`` when it is plain, ``SendRawEmail`` otherwise.

A plain mail with custom headers (List-Unsubscribe, a campaign id) goes through
SES v2's ``SendEmail`` with ``Simple`` content, which carries them (at most 15,
values of printable ASCII): no MIME of ours to build, as for a plain mail through v1.

botocore's errors are translated here, at the boundary, into the classes of
``errors.py`` so the rest of the sender decides on the class alone.
"""

from __future__ import annotations

import re
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
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "MaxSendRateExceeded",
     "LimitExceededException"}
)
# What SES v2's Simple content takes as custom headers (botocore's sesv2 model).
V2_MAX_HEADERS = 15
_V2_HEADER_VALUE = re.compile(r"^[ -~]{1,995}$")
PAUSED_CODES = frozenset(
    {"AccountSendingPausedException", "ConfigurationSetSendingPausedException", "SendingPaused",
     "SendingPausedException", "AccountSuspendedException"}  # the last two: SES v2
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


def v2_headers_fit(headers: Sequence[tuple[str, str]]) -> bool:
    """Whether SES v2's Simple content can carry ``headers`` as they are; if not, MIME
    encodes them (a non-ASCII value as RFC 2047 words, a long one folded)."""
    return len(headers) <= V2_MAX_HEADERS and all(
        _V2_HEADER_VALUE.match(value) for _, value in headers
    )


class SesSender:
    """Sends mails through SES clients made by the caller: v1, and v2 for custom headers."""

    def __init__(self, ses_client: Any, sesv2_client: Any = None):
        self._ses = ses_client
        self._sesv2 = sesv2_client

    def simple_fits(self, mail: Mail, meta: Meta) -> bool:
        """Whether ``send_simple`` takes ``mail`` as it is, with no MIME to build."""
        if mail.attachments:
            return False
        return not meta.headers or (self._sesv2 is not None and v2_headers_fit(meta.headers))

    @staticmethod
    def _tags(meta: Meta, ledger_key: str | None) -> list[dict[str, str]]:
        tags = [{"Name": name, "Value": value} for name, value in meta.tags]
        if ledger_key is not None:
            # SES's Send event carries it back to the ledger (ledger.py, "evidence").
            tags.append({"Name": LEDGER_KEY_TAG, "Value": key_digest(ledger_key)})
        return tags

    def _common(self, meta: Meta, ledger_key: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"Source": _mailbox(meta.sender)}
        if meta.configuration_set:
            extra["ConfigurationSetName"] = meta.configuration_set
        tags = self._tags(meta, ledger_key)
        if tags:
            extra["Tags"] = tags
        return extra

    def _call(self, method: Any, **params: Any) -> str:
        try:
            return method(**params)["MessageId"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc) from exc

    @staticmethod
    def _destination(mail: Mail, meta: Meta) -> dict[str, list[str]]:
        destination = {}
        if mail.to:
            destination["ToAddresses"] = _mailboxes(mail.to)
        if meta.cc:
            destination["CcAddresses"] = _mailboxes(meta.cc)
        if meta.bcc:
            destination["BccAddresses"] = _mailboxes(meta.bcc)
        return destination

    @staticmethod
    def _message(mail: Mail) -> dict[str, Any]:
        """Subject and body as both SES versions take them."""
        body: dict[str, Any] = {}
        text = text_body(mail.html, mail.text)
        if text is not None:
            body["Text"] = {"Data": text, "Charset": "UTF-8"}
        if mail.html is not None:
            body["Html"] = {"Data": mail.html, "Charset": "UTF-8"}
        return {"Subject": {"Data": mail.subject, "Charset": "UTF-8"}, "Body": body}

    def send_simple(self, mail: Mail, meta: Meta, ledger_key: str | None = None) -> str:
        """``SendEmail``: HTML and text parts, Cc, Bcc and Reply-To without building MIME;
        through SES v2 when the mail has custom headers (``simple_fits`` says whether it may)."""
        if meta.headers:
            return self._send_v2(mail, meta, ledger_key)
        params = self._common(meta, ledger_key)
        if meta.reply_to:
            params["ReplyToAddresses"] = _mailboxes(meta.reply_to)
        return self._call(self._ses.send_email, Destination=self._destination(mail, meta),
                          Message=self._message(mail), **params)

    def _send_v2(self, mail: Mail, meta: Meta, ledger_key: str | None) -> str:
        """SES v2 ``SendEmail`` with ``Simple`` content and the custom headers."""
        if self._sesv2 is None or not v2_headers_fit(meta.headers):
            raise ValueError("custom headers need the SES v2 client and headers it takes")
        simple = self._message(mail)
        simple["Headers"] = [{"Name": name, "Value": value} for name, value in meta.headers]
        params: dict[str, Any] = {
            "FromEmailAddress": _mailbox(meta.sender),
            "Destination": self._destination(mail, meta),
            "Content": {"Simple": simple},
        }
        if meta.reply_to:
            params["ReplyToAddresses"] = _mailboxes(meta.reply_to)
        if meta.configuration_set:
            params["ConfigurationSetName"] = meta.configuration_set
        tags = self._tags(meta, ledger_key)
        if tags:
            params["EmailTags"] = tags
        return self._call(self._sesv2.send_email, **params)

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
