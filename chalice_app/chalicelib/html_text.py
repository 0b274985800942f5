"""Turn HTML bodies into a readable plain-text alternative.

Mail clients that show text only, and spam filters, expect a text part; the
plugin often has only HTML (``wp_mail`` with ``text/html``).

Implementation note: the body is untrusted and may be megabytes, so it is cut
into tokens by one regular expression whose every branch either matches or
runs to the end of the input, never backtracking: one pass, linear in the
input. ``html.parser`` was used before: it is quadratic on unclosed tags (60 KB
of ``<a `` took 40 s) and raises ``AssertionError`` on ``<![<![``. A library
(inscriptis) was weighed and left out: it brings lxml, a compiled package, into
the Lambda, and writes links and lists differently from the text the plugin's
contract tests pin.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from html import unescape

_BLOCKS = frozenset(
    "p div br li tr h1 h2 h3 h4 h5 h6 table ul ol blockquote pre hr section article header "
    "footer".split()
)
_SKIP = frozenset({"head", "title"})
# Elements whose content is not markup: skipped whole, up to their end tag.
_RAW_TEXT = frozenset({"script", "style"})
_CELLS = frozenset({"td", "th"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# Every branch ends in "(?:>|\Z)" or consumes possessively: a construct left
# open runs to the end of the input once, instead of being retried at each "<".
_TOKEN = re.compile(
    r"""
      (?P<comment><!--(?:.*?-->|.*\Z))
    | <(?P<end>/?)(?P<name>[A-Za-z][^\s/>]*+)
       (?P<attrs>(?:=\s*+(?:"[^"]*+"?|'[^']*+'?)|[^>])*+)(?:>|\Z)
    | (?P<other><[!?/][^>]*+(?:>|\Z))
    | (?P<text>(?:[^<]++|<(?![A-Za-z!?/]))++|<)
    """,
    re.DOTALL | re.VERBOSE,
)
_HREF = re.compile(r"""(?:^|[\s/])href\s*+=\s*+(?:"([^"]*+)|'([^']*+)|([^\s>]++))""", re.I)


def _raw_text_end(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{name}(?:[\s/][^>]*+)?(?:>|\Z)", re.IGNORECASE)


_RAW_TEXT_END = {name: _raw_text_end(name) for name in _RAW_TEXT}


def _href(attrs: str) -> str | None:
    found = _HREF.search(attrs)
    if found is None:
        return None
    return unescape(next(group for group in found.groups() if group is not None))


def _tokens(html: str) -> Iterator[tuple[str, str, str]]:
    """``(kind, name or text, attributes)``: kind is ``start``, ``end`` or ``text``."""
    position = 0
    while position < len(html):
        token = _TOKEN.match(html, position)
        assert token is not None  # the text branch matches any character
        position = token.end()
        if token["text"] is not None:
            yield "text", token["text"], ""
        elif token["name"] is not None:
            name = token["name"].lower()
            yield ("end" if token["end"] else "start"), name, token["attrs"]
            if name in _RAW_TEXT and not token["end"]:
                close = _RAW_TEXT_END[name].search(html, position)
                position = close.end() if close else len(html)


class _TextWriter:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self._skipping = 0
        self._pre = 0
        self._links: list[str | None] = []

    def start(self, tag: str, attrs: str) -> None:
        if tag in _SKIP:
            self._skipping += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in _BLOCKS:
            self.parts.append("\n")
        if tag == "a":
            self._links.append(_href(attrs))
        elif tag == "pre":
            self._pre += 1

    def end(self, tag: str) -> None:
        if tag in _SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.parts.append(f" ({href})")
        elif tag in _CELLS:
            self.parts.append("  ")  # cells of a row stay apart
        elif tag in _BLOCKS and tag not in ("br", "li"):
            self.parts.append("\n")
        if tag == "pre":
            self._pre = max(0, self._pre - 1)

    def text(self, data: str) -> None:
        if not self._skipping:
            data = unescape(data)
            # <pre> keeps its line breaks; elsewhere a line break is a space.
            self.parts.append(data if self._pre else _SPACES.sub(" ", data.replace("\n", " ")))


# Mails of a batch often share a body (a notice to every follower): render it once.
@functools.lru_cache(maxsize=16)
def html_to_text(html: str) -> str:
    """A plain-text rendering of ``html``: paragraphs kept, links spelled out."""
    writer = _TextWriter()
    for kind, value, attrs in _tokens(html):
        if kind == "text":
            writer.text(value)
        elif kind == "start":
            writer.start(value, attrs)
        else:
            writer.end(value)
    lines = (line.strip() for line in "".join(writer.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


def text_body(html: str | None, text: str | None) -> str | None:
    """The text part to send: the batch's own, or one made from its HTML."""
    if text is not None:
        return text
    return html_to_text(html) if html is not None else None
