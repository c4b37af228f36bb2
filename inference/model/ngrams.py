"""TF-IDF of hashed word and character n-grams, computed with numpy (the baseline's features).

sklearn's TfidfVectorizer walks every n-gram of every text in a Python loop, which held the baseline
to ~120 articles/s. Here a whole batch is one byte array: character n-grams are rolling hashes over
it, word n-grams combine per-word CRCs, and building the sparse matrix counts them, so the cost per
text is a few array operations. Hashes are stable across processes (no `hash()`), so a pickled model scores the same
everywhere.
"""
from __future__ import annotations

import zlib

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin

from data.text import WORD_ONLY_RE

_PRIME = np.uint64(1_099_511_628_211)  # FNV prime: the rolling-hash base
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spread a hash before keeping its top bits


def _buckets(h: np.ndarray, salt: int, bits: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return ((h ^ np.uint64(salt)) * _MIX) >> np.uint64(64 - bits)


def _char_ngrams(texts: list[str], lo: int, hi: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, bucket) of the character n-grams, lo <= n <= hi, of each lowercased word padded with a space
    on each side (sklearn's `char_wb`): "the" gives " t", "th", "he", "e ", " th"..."""
    ws = [t.lower().split() for t in texts]
    padded = [f" {w} ".encode() for wl in ws for w in wl]
    b = np.frombuffer(b"".join(padded), dtype=np.uint8).astype(np.uint64)
    sizes = [len(w) for w in padded]
    word = np.repeat(np.arange(len(padded)), sizes)
    row = np.repeat(np.repeat(np.arange(len(texts)), [len(wl) for wl in ws]), sizes)
    return _ngrams(b, word, row, lo, hi, 0, bits)


def _ngrams(h1: np.ndarray, seg: np.ndarray, row: np.ndarray, lo: int, hi: int, salt: int, bits: int):
    """(row, bucket) of the n-grams of a sequence of unit hashes that stay within one segment `seg`."""
    rows, buckets = [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    h = h1
    with np.errstate(over="ignore"):
        for n in range(1, hi + 1):
            if n > 1:
                h = h[:-1] * _PRIME + h1[n - 1:]
            if n >= lo:
                same = seg[:len(h)] == seg[n - 1:]
                rows.append(row[:len(h)][same])
                buckets.append(_buckets(h[same], salt + n, bits))
    return np.concatenate(rows), np.concatenate(buckets)


def _word_ngrams(texts: list[str], lo: int, hi: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    toks = [WORD_ONLY_RE.findall(t.lower()) for t in texts]
    h = np.fromiter((zlib.crc32(w.encode()) for ws in toks for w in ws), dtype=np.uint64)
    row = np.repeat(np.arange(len(texts)), [len(ws) for ws in toks])
    return _ngrams(h, row, row, lo, hi, 100, bits)


class HashedTfidf(TransformerMixin, BaseEstimator):
    """Rows: texts; columns: 2**hash_bits hashed n-grams; values: (1 + log tf) * idf, L2-normalised per row
    and block (word n-grams, character n-grams).
    N-grams seen in fewer than `min_df` training texts get idf 0 (dropped), like TfidfVectorizer's min_df.
    Every argument comes from the config's `baseline` section (train/baseline.py)."""

    def __init__(self, word_ngrams: tuple[int, int], char_ngrams: tuple[int, int], hash_bits: int, min_df: int):
        self.word_ngrams, self.char_ngrams, self.hash_bits, self.min_df = word_ngrams, char_ngrams, hash_bits, min_df

    def _counts(self, texts) -> sparse.csr_matrix:
        texts = [t if isinstance(t, str) else "" for t in texts]
        half = self.hash_bits - 1  # word n-grams in the lower half of the columns, characters in the upper
        r1, c1 = _word_ngrams(texts, *self.word_ngrams, half)
        r2, c2 = _char_ngrams(texts, *self.char_ngrams, half)
        rows = np.concatenate([r1, r2])
        cols = np.concatenate([c1, c2 + np.uint64(1 << half)]).astype(np.int32)
        # csr construction sums repeated (row, column) pairs: those are the term counts
        x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), 1 << self.hash_bits))
        x.sum_duplicates()
        return x

    def fit(self, texts, y=None):
        counts = self._counts(texts)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        idf = np.log((1 + counts.shape[0]) / (1 + df)) + 1
        self.idf_ = np.where(df >= self.min_df, idf, 0.0)
        return self

    def transform(self, texts) -> sparse.csr_matrix:
        """Each block (word, character) is L2-normalised on its own, as in a union of two vectorizers."""
        x = self._counts(texts)
        x.data = (1 + np.log(x.data)) * self.idf_[x.indices]
        x.eliminate_zeros()
        block = x.indices >> (self.hash_bits - 1)
        row = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
        norms = np.sqrt(np.bincount(row * 2 + block, weights=x.data ** 2, minlength=2 * x.shape[0]))
        x.data /= np.maximum(norms, 1e-12)[row * 2 + block]
        return x
