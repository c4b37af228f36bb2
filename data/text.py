"""Word and sentence segmentation with character offsets.

Shared by the dataset builder (which labels words) and the detector (which scores them), so both
see exactly the same words.

Every function here is linear in the length of the text, whatever it holds: texts come from anyone
(docs/serving.md, "What is read of a text"). Rules that must match patterns in such text are written for
RE2 (`google-re2`), whose matching time is linear by construction; `re2_compile` and the character
classes below give them Python's Unicode meaning of \\s and \\w, which RE2 lacks (its \\s, \\w and
\\b are ASCII-only). The two word patterns stay in `re`: each match consumes what it tries and never
fails after consuming, so they are linear, and they must stay exactly what the model was trained on.
"""
from __future__ import annotations

import re

import re2

# A word is a run of letters/digits with inner apostrophes, hyphens or decimal points ("don't",
# "long-term", "1.13"), or a single other non-space character (punctuation).
_WORD = r"\w+(?:[’'\-.,]\w+)*"
WORD_RE = re.compile(_WORD + r"|[^\w\s]")
WORD_ONLY_RE = re.compile(_WORD)  # the same words, punctuation left out

# RE2 classes with Python's meaning (str.isspace, and \w = letters, digits, underscore); tests check
# them against `re` over every code point.
SPACE_CHARS = "\t-\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SPACE = f"[{SPACE_CHARS}]"
NOT_SPACE = f"[^{SPACE_CHARS}]"
WORD_CHARS = r"\p{L}\p{N}_"
WORD_CHAR = f"[{WORD_CHARS}]"
NOT_WORD_CHAR = f"[^{WORD_CHARS}]"


def re2_compile(pattern: str, ignore_case: bool = False) -> re2._Regexp:
    """An RE2 regex (linear-time matching); raises re2.error on syntax RE2 lacks (lookarounds, backreferences)."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    return re2.compile(pattern, options)


# Abbreviations after which a full stop does not end a sentence.
ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "gov", "sen", "rep", "lt", "col",
    "capt", "sgt", "rev", "inc", "ltd", "co", "corp", "vs", "etc", "no", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "u.n", "e.g", "i.e", "a.m",
    "p.m", "approx", "dept", "est", "fig", "al",
}
# A sentence end: . ! ? (with closing quotes) followed by white space or the end of the text, or a blank
# line. RE2 has no lookahead, so the white space that follows is matched too: all of it when it holds a
# blank line (that is a second boundary), else one character.
_SENT_END = re2_compile(rf"[.!?]+[\"'”’)\]]*(?:{SPACE}*\n{SPACE}*\n|{SPACE}|$)|\n{SPACE}*\n")


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
    cuts, start = [], 0
    for m in _SENT_END.finditer(text):
        mark = m.group()
        punct = mark.rstrip()
        if punct:
            end = m.start() + len(punct)
            if not (punct[0] == "." and _continues(text, start, m.start(), end)):
                cuts.append(end)
                start = end
            if mark.count("\n") < 2:
                continue
        cuts.append(m.end())  # a blank line
        start = m.end()
    out, s = [], 0
    for e in cuts + [len(text)]:
        chunk = text[s:e]
        ls = len(chunk) - len(chunk.lstrip())
        rs = len(chunk.rstrip())
        if rs > ls:
            out.append((s + ls, s + rs))
        s = e
    return out


def _continues(text: str, start: int, dot: int, end: int) -> bool:
    """A full stop at text[dot] does not end the sentence begun at `start`: it follows a known
    abbreviation or a single letter, or a lowercase word follows it."""
    last = _last_token(text, start, dot).lower().rstrip(".")
    if last in ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
        return True
    following = text[end:end + 3].lstrip()
    return bool(following) and following[0].islower()


def _last_token(text: str, lo: int, hi: int) -> str:
    """The last white-space-separated token of text[lo:hi], read backwards from `hi`: each character is
    read by at most two sentence ends, where splitting text[lo:hi] anew at each would be quadratic."""
    j = hi
    while j > lo and text[j - 1].isspace():
        j -= 1
    i = j
    while i > lo and not text[i - 1].isspace():
        i -= 1
    return text[i:j]
