"""What a flagged span probably said before spinning.

A reverse lookup of the spinner dictionaries (spun form -> originals it could have come from), with
candidates ranked by how well they fit the words around the span in clean news text (unigram and
bigram counts from the training originals), or by the language model where it read the sentence (the
alternative the context prefers). "best diplomat" -> "top diplomat",
"counterfeit consciousness" -> "artificial intelligence".
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

from data.dictionaries import base_forms, inflect, keep_case
from data.text import is_word, words

MAX_PHRASE = 4


class Suggester:
    def __init__(self, reverse: dict[str, list[str]], unigram: dict[str, int], bigram: dict[str, int],
                 neighbour_weight: float):
        """neighbour_weight: of the neighbour-pair counts against the candidate's frequency (configs:
        `suggestions.neighbour_weight`)."""
        self.reverse, self.unigram, self.bigram = reverse, unigram, bigram
        self.neighbour_weight = neighbour_weight

    @classmethod
    def load(cls, path: str | Path) -> Suggester:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            d = json.load(f)
        return cls(d["reverse"], d["unigram"], d["bigram"], d["neighbour_weight"])

    def save(self, path: str | Path) -> Path:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump({"reverse": self.reverse, "unigram": self.unigram, "bigram": self.bigram,
                       "neighbour_weight": self.neighbour_weight}, f)
        return Path(path)

    def candidates(self, phrase: str) -> list[str]:
        key = phrase.lower()
        if key in self.reverse:
            return self.reverse[key]
        if " " not in key:  # crude inflection, as the spinner applied it
            for base, suffix in base_forms(key, 0):
                if base in self.reverse:
                    return [inflect(c, suffix) for c in self.reverse[base]]
        return []

    def fit(self, cand: str, left: str | None, right: str | None) -> float:
        toks = cand.lower().split()
        score = math.log1p(self.unigram.get(toks[0], 0))
        if left:
            score += self.neighbour_weight * math.log1p(self.bigram.get(f"{left.lower()} {toks[0]}", 0))
        if right:
            score += self.neighbour_weight * math.log1p(self.bigram.get(f"{toks[-1]} {right.lower()}", 0))
        return score

    def suggest(self, text: str, start: int, end: int, preferred: dict[int, str] | None = None) -> str | None:
        """The span text[start:end] with each phrase it knows replaced by its likeliest original.
        `preferred`: word start offset -> the alternative a language model found likeliest there."""
        toks = [(start + s, start + e) for s, e in words(text[start:end])]
        head, tail = text[max(0, start - 80):start], text[end:end + 80]  # neighbours are near
        before = [head[s:e] for s, e in words(head) if is_word(head[s:e])]
        after = [tail[s:e] for s, e in words(tail)]
        out, pos, i, changed = [], start, 0, False
        while i < len(toks):
            for n in range(min(MAX_PHRASE, len(toks) - i), 0, -1):
                s, e = toks[i][0], toks[i + n - 1][1]
                cands = self.candidates(text[s:e]) if is_word(text[s:e]) else []
                if n == 1 and preferred and s in preferred:
                    out += [text[pos:s], keep_case(text[s:e], preferred[s])]
                    pos, changed = e, True
                    i += 1
                    break
                if cands:
                    left = text[toks[i - 1][0]:toks[i - 1][1]] if i else (before[-1] if before else None)
                    right = text[toks[i + n][0]:toks[i + n][1]] if i + n < len(toks) else (after[0] if after else None)
                    best = max(cands, key=lambda c: self.fit(c, left, right))
                    # the span was flagged, so a swap back wins ties; the text as written must fit strictly better
                    if self.fit(best, left, right) >= self.fit(text[s:e], left, right):
                        out += [text[pos:s], keep_case(text[s:e], best)]
                        pos, changed = e, True
                    i += n
                    break
            else:
                i += 1
        out.append(text[pos:end])
        return "".join(out) if changed else None

    def fill(self, text: str, spans: list[dict], preferred: dict[int, str] | None = None) -> None:
        for span in spans:
            span["suggestion"] = self.suggest(text, span["start"], span["end"], preferred)
