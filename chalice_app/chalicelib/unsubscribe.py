"""RFC 8058 one-click unsubscribe headers for mails that belong to a list.

A notify job that names a list (``meta.list``) gets, per recipient, exactly::

    List-Unsubscribe: <https://...>            (or <https://...>, <mailto:ADDR?subject=unsubscribe>)
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

built here from the row's ``unsubscribe_url`` (the plugin computes it; its HMAC secret
never leaves WordPress). A version-1 batch that names a list carries the two headers the
plugin built already: they are checked, never added twice. RFC 8058 wants one https URI
in List-Unsubscribe; a URL that could break out of its angle brackets (``>``), start a
second URI (``,``), or fold the header (spaces, control characters) is refused, which
fails that recipient alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from chalicelib import fields
from chalicelib.errors import BatchFormatError

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"
HEADER_NAMES = frozenset({LIST_UNSUBSCRIBE.lower(), LIST_UNSUBSCRIBE_POST.lower()})
# A header line holds at most 998 (RFC 5322; SES refuses lines over 1,000):
# "List-Unsubscribe: <" + URL + ">," must fit on one. The schema's maxLength and the plugin
# (Postbag_Unsubscribe_Token::MAX_URL) say the same.
MAX_URL = 975
# Printable ASCII without space, '<', '>', ',' and '"': one URI that stays inside its brackets.
_URL = re.compile(r"https://[!#-+\-.-;=?-~]+")
_HEADER = re.compile(r"<(https://[^<>]+)>(?:, <mailto:([^<>?]+)\?subject=unsubscribe>)?")


def url(value: str, field: str, source: str, mail: str | None = None) -> str:
    """``value`` as the one https URI of a List-Unsubscribe header."""
    fields.header_value(value, field, source, mail)  # names control characters precisely
    if len(value) > MAX_URL:
        raise BatchFormatError(field, source, f"longer than {MAX_URL} characters (a header "
                                              f"line holds 998)", mail)
    if not _URL.fullmatch(value):
        reason = ("not an https URL of printable ASCII without spaces, '<', '>', ',' or '\"' "
                  "(RFC 8058 wants one https URI)")
        raise BatchFormatError(field, source, reason, mail)
    return value


def headers(unsubscribe_url: str, mailto: str = "") -> tuple[tuple[str, str], ...]:
    """The two headers, exactly, for a checked URL and an optional checked address."""
    value = f"<{unsubscribe_url}>"
    if mailto:
        value += f", <mailto:{mailto}?subject=unsubscribe>"
    return (LIST_UNSUBSCRIBE, value), (LIST_UNSUBSCRIBE_POST, ONE_CLICK)


def _field(headers: Sequence[tuple[str, str]], name: str) -> tuple[int, str] | None:
    found = [(i, value) for i, (n, value) in enumerate(headers) if n.lower() == name.lower()]
    return found[0] if len(found) == 1 else None


def check_batch_headers(headers: Sequence[tuple[str, str]], source: str) -> None:
    """A list batch's own headers: one List-Unsubscribe with one https URI (and at most a
    mailto), and List-Unsubscribe-Post with the RFC 8058 value, each exactly once."""
    found = _field(headers, LIST_UNSUBSCRIBE)
    if found is None:
        raise BatchFormatError("meta.headers", source,
                               "meta.list is set: one List-Unsubscribe header is required")
    index, value = found
    where = f"meta.headers[{index}].value"
    match = _HEADER.fullmatch(value)
    if match is None:
        raise BatchFormatError(where, source, "List-Unsubscribe must be <https://...>, "
                                              "optionally followed by , <mailto:...>")
    url(match.group(1), where, source)
    if match.group(2):
        fields.bare_address(match.group(2), where, source)
    post = _field(headers, LIST_UNSUBSCRIBE_POST)
    if post is None or post[1] != ONE_CLICK:
        raise BatchFormatError("meta.headers", source,
                               f"meta.list is set: one {LIST_UNSUBSCRIBE_POST}: {ONE_CLICK} "
                               f"header is required")


def refuse_job_headers(headers: Sequence[tuple[str, str]], source: str) -> None:
    """A list job's ``meta.headers`` may not set the unsubscribe headers: the sender builds
    them per recipient."""
    for index, (name, _) in enumerate(headers):
        if name.lower() in HEADER_NAMES:
            raise BatchFormatError(f"meta.headers[{index}].name", source,
                                   f"{name} is built by the sender for a job that names a list")
