"""Context-free article spinners and the alignment they leave behind.

A spinner walks the text, looks each word or phrase up in a synonym dictionary and swaps a share of
them, without reading the sentence, which is what makes real spun text read oddly ("shut ties").
Every swap is recorded as an `Edit`, so each word of the output is known to be spun or not.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from data.text import is_word, words


@dataclass(frozen=True)
class Edit:
    """`original[src_start:src_end] == src` became `spun[dst_start:dst_end] == dst`."""

    src_start: int
    src_end: int
    dst_start: int
    dst_end: int
    src: str
    dst: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Spun:
    text: str
    edits: list[Edit]
    rate: float  # share of eligible words and phrases that were replaced


def apply_edits(original: str, edits: Sequence[Edit | dict]) -> str:
    """Rebuild the spun text from the original and its edits (edits sorted by position)."""
    out, pos = [], 0
    for e in edits:
        e = e if isinstance(e, Edit) else Edit(**e)
        out.append(original[pos:e.src_start])
        out.append(e.dst)
        pos = e.src_end
    out.append(original[pos:])
    return "".join(out)


def word_labels(spun: str, edits: Sequence[Edit | dict]) -> list[int]:
    """1 for each word of `spun` (as `data.text.words` splits it) inside an edit, else 0."""
    spans = [(e.dst_start, e.dst_end) if isinstance(e, Edit) else (e["dst_start"], e["dst_end"]) for e in edits]
    labels, k = [], 0
    for s, e in words(spun):
        while k < len(spans) and spans[k][1] <= s:
            k += 1
        labels.append(int(k < len(spans) and spans[k][0] < e))
    return labels


def keep_case(src: str, dst: str) -> str:
    if len(src) > 1 and src.isupper():
        return dst.upper()
    if src[:1].isupper():
        return dst[:1].upper() + dst[1:]
    return dst


# Crude inflection, as spinners do it: strip a suffix, look the stem up, glue the suffix back on.
SUFFIXES = [("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"), ("ly", "")]


def inflect(word: str, suffix: str) -> str:
    if suffix == "ies" or (suffix == "s" and word.endswith("y") and word[-2:-1] not in "aeiou"):
        return word[:-1] + "ies"
    if suffix in ("ed", "ing") and word.endswith("e"):
        return word[:-1] + suffix
    return word + ("s" if suffix == "es" and not word.endswith(("s", "x", "ch", "sh")) else suffix)


class DictionarySpinner:
    """Swaps words and phrases found in `lookup` (lower-case key -> candidates, best first).

    rate: (low, high) range from which each document's share of eligible words to swap is drawn.
    top_k: how many of the best candidates a swap chooses among.
    protect_capitalized: leave capitalised words inside a sentence alone (names), as most spinners do.
    inflections: try the crude suffix rules when a word is not in the dictionary as written.
    """

    def __init__(self, name: str, lookup: Callable[[str], list[str]], max_phrase_words: int,
                 rate: Sequence[float], top_k: int, protect_capitalized: bool, inflections: bool):
        self.name, self.lookup, self.max_n = name, lookup, max_phrase_words
        self.rate, self.top_k = (float(rate[0]), float(rate[1])), top_k
        self.protect_capitalized, self.inflections = protect_capitalized, inflections

    def _options(self, key: str) -> tuple[list[str], str]:
        """Candidates for `key` and the suffix to glue onto them."""
        found = self.lookup(key)
        if found or not self.inflections or " " in key:
            return found, ""
        for suffix, ending in SUFFIXES:
            if key.endswith(suffix) and len(key) - len(suffix) >= 3:
                found = self.lookup(key[: -len(suffix)] + ending)
                if found:
                    return found, suffix
        return [], ""

    def _eligible(self, text: str, toks: list[tuple[int, int]], regions) -> list[tuple[int, int, list[str]]]:
        """Non-overlapping (start, end, replacements) for phrases the dictionary knows, longest first."""
        out, i = [], 0
        while i < len(toks):
            found = None
            for n in range(min(self.max_n, len(toks) - i), 0, -1):
                span = toks[i:i + n]
                if any(span[k + 1][0] - span[k][1] != 1 or text[span[k][1]] != " " for k in range(n - 1)):
                    continue
                s, e = span[0][0], span[-1][1]
                src = text[s:e]
                if not is_word(text[span[0][0]:span[0][1]]) or not self._swappable(text, toks, i, src):
                    continue
                if regions is not None and not any(rs <= s and e <= re_ for rs, re_ in regions):
                    continue
                options, suffix = self._options(src.lower())
                options = [inflect(o, suffix) if suffix else o for o in options[: self.top_k]]
                options = [o for o in options if o.lower() != src.lower()]
                if options:
                    found = (s, e, options, n)
                    break
            if found:
                out.append(found[:3])
                i += found[3]
            else:
                i += 1
        return out

    def _swappable(self, text: str, toks, i: int, src: str) -> bool:
        if any(ch.isdigit() for ch in src):
            return False
        if not self.protect_capitalized or not src[:1].isupper():
            return True
        if len(src) > 1 and src.split()[0].isupper():
            return False  # acronym
        if i == 0:
            return True
        prev = text[toks[i - 1][0]:toks[i - 1][1]]
        return prev in ".!?:\"“”" or "\n" in text[toks[i - 1][1]:toks[i][0]]

    def spin(self, text: str, seed: int, regions: Sequence[tuple[int, int]] | None = None) -> Spun:
        """Spin `text` deterministically under `seed`; `regions` limits swaps to those spans."""
        rng = random.Random(seed)
        eligible = self._eligible(text, words(text), regions)
        rate = rng.uniform(*self.rate)
        k = min(len(eligible), max(1, round(rate * len(eligible)))) if eligible else 0
        chosen = sorted(rng.sample(range(len(eligible)), k))
        out, edits, pos, shift = [], [], 0, 0
        for idx in chosen:
            s, e, options = eligible[idx]
            dst = keep_case(text[s:e], rng.choice(options))
            out.append(text[pos:s])
            edits.append(Edit(s, e, s + shift, s + shift + len(dst), text[s:e], dst))
            out.append(dst)
            shift += len(dst) - (e - s)
            pos = e
        out.append(text[pos:])
        return Spun("".join(out), edits, k / len(eligible) if eligible else 0.0)
