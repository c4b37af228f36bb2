"""Crafted texts on which text handling used to take time growing with the square of their size (issue #10).

Shared by bench/bench_hostile.py (seconds per 100 KB) and tests/test_hostile.py (a record comes back at
200 KB). Each family maps a size in bytes to a text of about that many UTF-8 bytes, and says whether the
batch command reads it as a .txt or an .html file (the service and the worker take it as plain text).
"""
from __future__ import annotations

from collections.abc import Callable

from tests.conftest import PARAGRAPHS


def _prose(size: int) -> str:
    """Ordinary news paragraphs: the reference the hostile families are compared with."""
    text, k = [], 0
    while sum(len(p) + 2 for p in text) < size:
        text.append(PARAGRAPHS[k % len(PARAGRAPHS)])
        k += 1
    return "\n\n".join(text)[:size]


# name -> (file suffix for the batch command, text of about `size` bytes), and what it used to hit.
FAMILIES: dict[str, tuple[str, Callable[[int], str]]] = {
    "prose": ("txt", _prose),  # reference: ordinary text
    "excl": ("txt", lambda n: "!" * (n - 1) + "x"),  # data.text sentence-end regex
    "abbrev": ("txt", lambda n: "Mr. " * (n // 4)),  # data.text abbreviation re-scan
    "nav_spaces": ("txt", lambda n: "Word" + " " * (n - 8) + "word"),  # prose navigation separators
    "url_dots": ("txt", lambda n: "a." * (n // 2)),  # prose URL/e-mail rule
    "byline_spaces": ("txt", lambda n: "By A" + " " * (n - 5) + "x"),  # prose byline rule
    "html_paras": ("html", lambda n: "<p>a</p>" * (n // 8)),  # HTML block boundaries (BeautifulSoup inserts)
    "html_nested": ("html", lambda n: "<div>" * ((n - 1) // 11) + "a" + "</div>" * ((n - 1) // 11)),  # deep nesting
    "html_lt_a": ("html", lambda n: "<a" * (n // 2)),  # html.parser's tokenizer on unfinished tags
}


def make(name: str, size: int) -> str:
    return FAMILIES[name][1](size)
