"""Word and sentence segmentation with character offsets.

Shared by the dataset builder (which labels words) and the detector (which scores them), so both
see exactly the same words.
"""
from __future__ import annotations

import re

# A word is a run of letters/digits with inner apostrophes, hyphens or decimal points ("don't",
# "long-term", "1.13"), or a single other non-space character (punctuation).
_WORD = r"\w+(?:[’'\-.,]\w+)*"
WORD_RE = re.compile(_WORD + r"|[^\w\s]")
WORD_ONLY_RE = re.compile(_WORD)  # the same words, punctuation left out

# Abbreviations after which a full stop does not end a sentence.
ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "gov", "sen", "rep", "lt", "col",
    "capt", "sgt", "rev", "inc", "ltd", "co", "corp", "vs", "etc", "no", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "u.n", "e.g", "i.e", "a.m",
    "p.m", "approx", "dept", "est", "fig", "al",
}
_SENT_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+|$)|\n\s*\n")


def words(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each word and punctuation mark in `text`."""
    return [m.span() for m in WORD_RE.finditer(text)]


def is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of sentences, trimmed of surrounding white space.

    Splits after . ! ? (with closing quotes) when followed by white space, and at blank lines; not
    after a known abbreviation or a single capital letter ("J. Smith").
    """
    spans, start = [], 0
    for m in _SENT_END.finditer(text):
        end = m.end()
        if m.group().strip() and m.group()[0] == ".":
            before = text[start:m.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            if last in ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                continue
            following = text[end:end + 3].lstrip()
            if following and following[0].islower():
                continue
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        chunk = text[s:e]
        ls = len(chunk) - len(chunk.lstrip())
        rs = len(chunk.rstrip())
        if rs > ls:
            out.append((s + ls, s + rs))
    return out
