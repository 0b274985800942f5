"""Turn HTML bodies into a readable plain-text alternative.

Mail clients that show text only, and spam filters, expect a text part; the
plugin often has only HTML (``wp_mail`` with ``text/html``).
"""

from __future__ import annotations

import functools
import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    "p div br li tr h1 h2 h3 h4 h5 h6 table ul ol blockquote pre hr section article header "
    "footer".split()
)
_SKIP = frozenset({"script", "style", "head", "title"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skipping += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in _BLOCKS:
            self.parts.append("\n")
        if tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "a" and self._links:
            href = self._links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.parts.append(f" ({href})")
        elif tag in _BLOCKS and tag not in ("br", "li"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(_SPACES.sub(" ", data.replace("\n", " ")))


# Mails of a batch often share a body (a notice to every follower): render it once.
@functools.lru_cache(maxsize=16)
def html_to_text(html: str) -> str:
    """A plain-text rendering of ``html``: paragraphs kept, links spelled out."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


def text_body(html: str | None, text: str | None) -> str | None:
    """The text part to send: the batch's own, or one made from its HTML."""
    if text is not None:
        return text
    return html_to_text(html) if html is not None else None
