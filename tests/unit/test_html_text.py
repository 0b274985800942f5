"""The text alternative made from HTML-only mail."""

from __future__ import annotations

import pytest

from chalicelib.html_text import html_to_text, text_body

CASES = [
    ("paragraphs", "<p>One</p><p>Two</p>", "One\n\nTwo\n"),
    ("entities", "<p>Caf&eacute; &amp; Zo&#235;</p>", "Café & Zoë\n"),
    ("links-spelled-out", '<a href="https://x.example/p">Post</a>', "Post (https://x.example/p)\n"),
    (
        "anchors-and-mailto-kept-short",
        '<a href="#top">Top</a> <a href="mailto:a@b.c">Mail</a>',
        "Top Mail\n",
    ),
    ("lists", "<ul><li>a</li><li>b</li></ul>", "- a\n- b\n"),
    ("line-breaks", "one<br>two<br/>three", "one\ntwo\nthree\n"),
    ("no-scripts-or-styles", "<style>p{color:red}</style><script>x()</script><p>Hi</p>", "Hi\n"),
    ("whitespace-folded", "<p>  lots \n of\t space </p>", "lots of space\n"),
]


@pytest.mark.parametrize("html, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_html_to_text(html, text):
    assert html_to_text(html) == text


def test_text_body_prefers_the_batch_text():
    assert text_body("<p>html</p>", "own text") == "own text"
    assert text_body("<p>html</p>", None) == "html\n"
    assert text_body(None, None) is None
