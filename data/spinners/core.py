"""What every spinner family shares: edits, alignment labels, casing, crude inflection, and the
dictionary-driven spinner most families are.

A dictionary spinner walks the text, looks each word or phrase up and swaps a share of them without
reading the sentence, which is what makes real spun text read oddly ("shut ties"). Every swap is
recorded as an `Edit`, so each word of the output is known to be spun or not.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from data.dictionaries import base_forms, inflect, keep_case
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


NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve twenty thirty forty "
                         "fifty hundred thousand million billion first second third".split())


class Table(dict):
    """A swap dictionary as a lookup: lower-case word or phrase -> candidates, best first."""

    def __call__(self, key: str) -> list[str]:
        return self.get(key, [])


class DictionarySpinner:
    """Swaps words and phrases found in `lookup` (lower-case key -> candidates, best first).

    rate: (low, high) range from which each document's share of eligible words to swap is drawn.
    top_k: how many of the best candidates a swap chooses among.
    protect_capitalized: leave capitalised words inside a sentence alone (names), as most spinners do.
    protect_numbers: leave digits and number words alone; some spinners turn "five" into "5".
    inflections: try the crude suffix rules when a word is not in the dictionary as written.
    skip: words never swapped on their own (a family's habit: most leave "the", "in" alone).
    """

    def __init__(self, name: str, lookup: Callable[[str], list[str]], max_phrase_words: int,
                 rate: Sequence[float], top_k: int, protect_capitalized: bool, inflections: bool,
                 protect_numbers: bool = True, skip: frozenset[str] = frozenset()):
        self.name, self.lookup, self.max_n = name, lookup, max_phrase_words
        self.rate, self.top_k = (float(rate[0]), float(rate[1])), top_k
        self.protect_capitalized, self.inflections = protect_capitalized, inflections
        self.protect_numbers, self.skip = protect_numbers, skip

    def _options(self, key: str) -> tuple[list[str], str]:
        """Candidates for `key` and the suffix to glue onto them."""
        found = self.lookup(key)
        if found or not self.inflections or " " in key:
            return found, ""
        for base, suffix in base_forms(key, 3):
            found = self.lookup(base)
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
                if n == 1 and src.lower() in self.skip:
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
        if self.protect_numbers and any(w in NUMBER_WORDS for w in src.lower().split()):
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
        chosen = choose(eligible, rng.uniform(*self.rate), rng)
        return rewrite(text, [(s, e, rng.choice(options)) for s, e, options in chosen], len(eligible))

    def spin_many(self, items: Sequence[tuple[str, int, Sequence[tuple[int, int]] | None]]) -> list[Spun]:
        """`spin` over (text, seed, regions) items; families that batch a model override it."""
        return [self.spin(*item) for item in items]

    def table(self, vocabulary) -> dict[str, list[str]]:
        """Its dictionary: every key of a `Table` lookup, or the entries of the `vocabulary` words."""
        keys = self.lookup.keys() if isinstance(self.lookup, Table) else vocabulary
        return {k: opts for k in sorted(keys) if (opts := self.lookup(k))}


def choose(eligible: list, rate: float, rng: random.Random) -> list:
    """The share `rate` of `eligible` swaps (at least one), in text order."""
    k = min(len(eligible), max(1, round(rate * len(eligible)))) if eligible else 0
    return [eligible[i] for i in sorted(rng.sample(range(len(eligible)), k))]


def rewrite(text: str, swaps: Sequence[tuple[int, int, str]], n_eligible: int) -> Spun:
    """Apply non-overlapping (start, end, replacement) swaps in text order, keeping the source's case."""
    out, edits, pos, shift = [], [], 0, 0
    for s, e, dst in swaps:
        dst = keep_case(text[s:e], dst)
        out.append(text[pos:s])
        edits.append(Edit(s, e, s + shift, s + shift + len(dst), text[s:e], dst))
        out.append(dst)
        shift += len(dst) - (e - s)
        pos = e
    out.append(text[pos:])
    return Spun("".join(out), edits, len(swaps) / n_eligible if n_eligible else 0.0)
