"""The LM family: a spinner that reads the sentence. Each swapped word's candidates are its neighbours in
SmolLM2's input-embedding space, and the language model picks the one that best fits the words before
it, as AI "rewriters" do: the swaps are plausible in context, the hardest kind to see."""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.dictionaries import embedding_neighbours
from data.spinners.core import NUMBER_WORDS, Spun, choose, rewrite
from data.text import sentences, words


@dataclass
class LMConfig:
    rate: list[float]
    neighbours: int  # embedding neighbours the language model chooses among
    min_similarity: float
    top_k: int  # a swap picks among the k candidates the model finds likeliest
    min_count: int  # words rarer than this in the originals are not swapped
    skip_common: int  # nor the commonest words (function words)
    protect_capitalized: bool
    protect_numbers: bool
    quantize: bool


def smollm2_vectors(lm) -> tuple[list[str], np.ndarray]:
    """Whole lower-case words of SmolLM2's vocabulary (tokens that start a word) and their embeddings."""
    vocab = lm.tokenizer.get_vocab()
    pairs = sorted((i, t[1:]) for t, i in vocab.items() if t.startswith("Ġ") and t[1:].isalpha()
                   and t[1:].islower() and len(t) > 3)
    matrix = lm.model.get_input_embeddings().weight.detach().numpy()
    return [w for _, w in pairs], matrix[[i for i, _ in pairs]]


class LMSpinner:
    def __init__(self, cfg: LMConfig, lm, neighbours: dict[str, list[str]]):
        self.name, self.cfg, self.lm, self.neighbours = "lm", cfg, lm, neighbours
        self.rate = (float(cfg.rate[0]), float(cfg.rate[1]))

    def _eligible(self, text: str, regions) -> list[tuple[int, int, list[str]]]:
        out, prev_end = [], None
        for s, e in words(text):
            w = text[s:e]
            starts_sentence = prev_end is None or text[prev_end - 1:prev_end] in ".!?\"“”:" or "\n" in text[prev_end:s]
            prev_end = e
            options = self.neighbours.get(w.lower())
            if not options or (regions is not None and not any(a <= s and e <= b for a, b in regions)):
                continue
            if self.cfg.protect_capitalized and w[:1].isupper() and not starts_sentence:
                continue
            if self.cfg.protect_numbers and w.lower() in NUMBER_WORDS:
                continue
            out.append((s, e, options))
        return out

    def spin(self, text: str, seed: int, regions: Sequence[tuple[int, int]] | None = None) -> Spun:
        return self.spin_many([(text, seed, regions)])[0]

    def spin_many(self, items) -> list[Spun]:
        """All items' chosen words are priced by the model together, sentence by sentence."""
        from data.lm import WordQuery

        plans = []
        for text, seed, regions in items:
            rng = random.Random(seed)
            eligible = self._eligible(text, regions)
            plans.append((text, rng, choose(eligible, rng.uniform(*self.rate), rng), len(eligible)))
        units, queries = [], []
        for k, (text, _, chosen, _) in enumerate(plans):
            for s0, e0 in sentences(text):
                mine = [c for c in chosen if s0 <= c[0] < e0]
                if mine:  # the model need not read past the last word it prices
                    units.append((k, text[s0:max(e for _, e, _ in mine)], mine))
                    queries.append([WordQuery(s - s0, e - s0, opts) for s, e, opts in mine])
        priced = self.lm.score([u[1] for u in units], queries, [u[0] for u in units])
        picks: list[list[tuple[int, int, str]]] = [[] for _ in plans]
        for (k, _, mine), likelihoods in zip(units, priced):
            rng = plans[k][1]
            for (s, e, opts), lk in zip(mine, likelihoods):
                if np.isnan(lk.alternatives).all():
                    continue  # no left context to fit (the sentence's first word)
                best = np.argsort(-np.nan_to_num(lk.alternatives, nan=-np.inf))[: self.cfg.top_k]
                picks[k].append((s, e, opts[int(rng.choice(list(best)))]))
        return [rewrite(text, sorted(p), n) for (text, _, _, n), p in zip(plans, picks)]

    def table(self, vocabulary) -> dict[str, list[str]]:
        """The candidates the model chooses among, whatever the context."""
        return dict(sorted(self.neighbours.items()))


def build(cfg: LMConfig, resources) -> LMSpinner:
    from data.lm import shared

    lm = shared("int8" if cfg.quantize else "float32")
    counts, common = resources.counts, resources.most_common(cfg.skip_common)
    tokens, vectors = smollm2_vectors(lm)
    known = [k for k, t in enumerate(tokens) if counts.get(t, 0) > 0 and t not in common]  # candidates: news words
    tokens, vectors = [tokens[k] for k in known], vectors[known]
    queries = [t for t in tokens if counts[t] >= cfg.min_count]
    found = embedding_neighbours(vectors, tokens, queries, cfg.neighbours, cfg.min_similarity)
    return LMSpinner(cfg, lm, {w: [n for n, _ in ns] for w, ns in found.items()})
