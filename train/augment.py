"""Random swaps: spun words that no spinner's dictionary made, mixed into the tagger's training rows.

A share of the training rows get some more of their words replaced by random words of the training
originals, of the same ending class and a similar frequency ("said" -> "paid", "growth" -> "stock"). No
dictionary tells these swaps apart, so the tagger learns them only from what a swap does to its sentence: a
word that does not fit. That is the evidence that carries over to a spinner it never saw (ELECTRA's
replaced-token detection, with a unigram generator), where a spinner's own swaps teach it its vocabulary.
"""
from __future__ import annotations

import bisect
import random
from collections import defaultdict

from data.build import word_counts
from data.dictionaries import same_stem, suffix_class
from data.spinners.core import choose, rewrite
from data.text import words
from train.config import RandomSwapsSection


class RandomSwaps:
    def __init__(self, originals: list[str], cfg: RandomSwapsSection):
        self.cfg = cfg
        counts = word_counts(originals)
        common = {w for w, _ in counts.most_common(cfg.skip_common)}
        self.counts = {w: n for w, n in counts.items() if w.isalpha() and n >= cfg.min_count and w not in common}
        pools: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for w, n in self.counts.items():
            pools[suffix_class(w)].append((n, w))
        self.pools = {k: sorted(v) for k, v in pools.items()}

    def replacement(self, word: str, rng: random.Random) -> str | None:
        """A random word of the same ending class whose count is within `frequency_ratio` times the word's."""
        n, pool = self.counts[word], self.pools[suffix_class(word)]
        lo = bisect.bisect_left(pool, (n / self.cfg.frequency_ratio, ""))
        hi = bisect.bisect_right(pool, (n * self.cfg.frequency_ratio, "\uffff"))
        if hi - lo < 2:
            return None
        for _ in range(8):
            other = pool[rng.randrange(lo, hi)][1]
            if not same_stem(word, other):
                return other
        return None

    def __call__(self, row: dict, rng: random.Random) -> dict:
        """The row with a random share of its clean, lower-case known words swapped (labelled spun)."""
        text, labels = row["text"], list(row["word_labels"])
        toks = words(text)
        eligible = [(i, s, e) for i, (s, e) in enumerate(toks)
                    if not labels[i] and text[s:e].islower() and text[s:e] in self.counts]
        swaps = []
        for i, s, e in choose(eligible, rng.uniform(*self.cfg.rate), rng):
            if (dst := self.replacement(text[s:e], rng)) is not None:
                swaps.append((s, e, dst))
                labels[i] = 1
        if not swaps:
            return row
        return {**row, "text": rewrite(text, swaps, len(eligible)).text, "word_labels": labels, "label": 1}


def add_random_swaps(rows: list[dict], originals: list[str], cfg: RandomSwapsSection,
                     rng: random.Random) -> list[dict]:
    """`rows` with a share `cfg.share` of them (chosen at random) given random swaps; same count and order."""
    if not cfg.share:
        return rows
    swap = RandomSwaps(originals, cfg)
    return [swap(r, rng) if rng.random() < cfg.share else r for r in rows]
