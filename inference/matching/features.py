"""What a reference (or an input) is searched by: its features, for the index behind `inference.match`.

Retrieval has to survive 20-60% of an article's words being swapped, so it does not rest on word
shingles. It indexes each reference's **immutables**: what a spinner's dictionary cannot touch.
- numbers ("76%", "$1.13bn", "five" read as "5", since spinners write number words as digits);
- names: capitalised words in mid-sentence and acronyms (spinners leave them alone);
- rare words: words a thesaurus does not list (`vocabulary: moby`: not a Moby headword, nor one after
  the crude suffix stripping spinners do), e.g. "broadband", "TimeWarner", "search-engine".
Candidates are ranked by IDF-weighted cosine over immutables (an inverted index, numpy scoring), then
re-ranked with the Jaccard similarity of their whole word sets (sorted word hashes per reference),
which puts the exact original ahead of other rewrites of the same story with the same immutables.
Passages of the input (a few sentences each) are searched on their own as well, by immutables and
by a 1-in-8 sample of word 3-grams: that finds the source of a partial copy, whose copied paragraphs
are outweighed by the rest of the text.
"""
from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from inference.matching.align import STOPWORDS, Doc, analyze, sentence_spans
from inference.matching.store import FORMAT_VERSION


# Fields and types only: every value is in the `features:` section of configs/match.yaml
# (read by data.configfile), so it is written once.
@dataclass
class FeaturesConfig:
    vocabulary: str  # words a thesaurus knows are not immutable: moby | none
    min_rare_chars: int  # shorter unknown words are not used as rare words
    max_token_chars: int  # longer tokens (URLs, debris) are not features
    check_prose: bool  # drop boilerplate sentences (inference.model.prose) before taking features
    shingle_sample: int  # keep word 3-grams whose hash is 0 mod this (passage retrieval); 0: none


@lru_cache(maxsize=4)
def load_vocabulary(name: str) -> frozenset[str]:
    if name == "none":
        return frozenset()
    if name != "moby":
        raise ValueError(f"features.vocabulary: unknown vocabulary {name!r} (moby or none)")
    from data.dictionaries import load_moby

    return frozenset(load_moby())


def _swappable(word: str, vocab: frozenset[str]) -> bool:
    """Whether a thesaurus spinner could look `word` up (as written or after crude suffix stripping)."""
    from data.dictionaries import base_forms

    return word in vocab or any(base in vocab for base, _ in base_forms(word, 3))


def _feature_form(n: str) -> str:
    return n.removesuffix("'s")


def word_hash(words: Iterable[str]) -> np.ndarray:
    return np.unique(np.fromiter((zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in words), dtype=np.uint32))


class Featurizer:
    def __init__(self, cfg: FeaturesConfig):
        self.cfg = cfg
        self.vocab = load_vocabulary(cfg.vocabulary)
        self._swap_cache: dict[str, bool] = {}

    def fingerprint(self) -> dict:
        v = hashlib.sha256("\n".join(sorted(self.vocab)).encode()).hexdigest()[:16]
        return {**asdict(self.cfg), "vocabulary_sha": v, "format": FORMAT_VERSION}

    def is_rare(self, n: str) -> bool:
        if len(n) < self.cfg.min_rare_chars or n in STOPWORDS or not n.replace("-", "").replace("'", "").isalpha():
            return False
        if not self.vocab:
            return False
        hit = self._swap_cache.get(n)
        if hit is None:
            hit = self._swap_cache[n] = not _swappable(n, self.vocab)
        return hit

    def features(self, doc: Doc) -> tuple[set[str], np.ndarray]:
        """(immutable tokens, sorted hashes of all content words) of the prose of `doc`."""
        imm, content = set(), set()
        for k in doc.prose:
            s = doc.sentences[k]
            for n, fixed in zip(s.norms, s.fixed):
                if len(n) > self.cfg.max_token_chars:
                    continue
                if n not in STOPWORDS:
                    content.add(n)
                if fixed or self.is_rare(n):
                    imm.add(_feature_form(n))
        return imm, word_hash(content)

    def shingles(self, doc: Doc) -> np.ndarray:
        """Sorted hashes of a sample (1 in shingle_sample) of the word 3-grams of the prose of `doc`:
        a copied passage keeps all of its 3-grams, however few names and numbers it has."""
        mod = self.cfg.shingle_sample
        if mod <= 0:
            return np.zeros(0, np.uint32)
        out = []
        for k in doc.prose:
            w = doc.sentences[k].norms
            for i in range(len(w) - 2):
                h = zlib.crc32(f"{w[i]} {w[i + 1]} {w[i + 2]}".encode("utf-8", "surrogatepass"))
                if h % mod == 0:
                    out.append(h)
        return np.unique(np.asarray(out, dtype=np.uint32))

    def query_features(self, doc: Doc, chunk_words: int = 60) -> QueryFeatures:
        """Features of an input: whole text, and passages of consecutive prose sentences of about
        `chunk_words` words each (overlapping by a sentence, so a copied paragraph is not cut in two)."""
        imm, words = self.features(doc)
        chunks, sents = [], doc.prose
        k = 0
        while k < len(sents):
            j, n = k, 0
            while j < len(sents) and n < chunk_words:
                n += doc.sentences[sents[j]].n
                j += 1
            part = Doc(doc.text, [doc.sentences[i] for i in sents[k:j]])
            chunks.append((*self.features(part), self.shingles(part)))
            if j >= len(sents):
                break
            k = max(k + 1, j - 1)
        return QueryFeatures(imm, words, chunks)

    def index_features(self, text: str) -> tuple[list[str], np.ndarray, bytes, np.ndarray]:
        """(sorted immutables, word hashes, sentence spans to store, shingles) of a reference."""
        spans = sentence_spans(text, self.cfg.check_prose)
        doc = analyze(text, spans=spans)
        imm, words = self.features(doc)
        return sorted(imm), words, pack_spans(spans), self.shingles(doc)


@dataclass
class QueryFeatures:
    imm: set[str]
    words: np.ndarray
    chunks: list[tuple[set[str], np.ndarray, np.ndarray]]  # (immutables, word hashes, shingles) of passages



def pack_spans(spans: list[tuple[int, int, bool]]) -> bytes:
    return np.asarray(spans, dtype=np.int32).reshape(-1, 3).tobytes()


def unpack_spans(blob: bytes | None) -> list[tuple[int, int, bool]] | None:
    if blob is None:
        return None
    return [(s, e, bool(p)) for s, e, p in np.frombuffer(blob, dtype=np.int32).reshape(-1, 3).tolist()]

