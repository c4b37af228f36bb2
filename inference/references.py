"""The persisted, appendable index of known originals behind `inference.match`.

Retrieval has to survive 20-60% of an article's words being swapped, so it does not index word
shingles. It indexes each reference's **immutables**: what a spinner's dictionary cannot touch.
- numbers ("76%", "$1.13bn", "five" read as "5", since spinners write number words as digits);
- names: capitalised words in mid-sentence and acronyms (spinners leave them alone);
- rare words: words a thesaurus does not list (`vocabulary: moby`: not a Moby headword, nor one after
  the crude suffix stripping spinners do), e.g. "broadband", "TimeWarner", "search-engine".
Candidates are ranked by IDF-weighted cosine over immutables (an inverted index, numpy scoring), then
re-ranked with the Jaccard similarity of their whole word sets (sorted word hashes per reference),
which puts the exact original ahead of other rewrites of the same story with the same immutables.

On disk (`index_dir`):
- `refs.sqlite`: every reference's id, title and text (for alignment), rows numbered in insertion order;
- `segments/*.npz`: features of a batch of references (immutables as strings, word hashes), one per
  `add`, merged when there are more than `max_segments`;
- `manifest.json`: the segment list, how far rows are indexed, the feature settings (a different
  setting is an error, not a silently mixed index), and fingerprints of the reference inputs already read.
Adding references appends rows and one segment; existing references are never re-read or re-tokenised.
A crash between the two leaves rows without a segment: the next open indexes them from the stored text.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from inference.align import STOPWORDS, Doc, analyze

FORMAT_VERSION = 1


@dataclass
class FeaturesConfig:
    vocabulary: str = "moby"     # words a thesaurus knows are not immutable: moby | none
    min_rare_chars: int = 4      # shorter unknown words are not used as rare words
    max_token_chars: int = 40    # longer tokens (URLs, debris) are not features
    check_prose: bool = True     # drop boilerplate sentences (inference.prose) before taking features


@dataclass
class IndexConfig:
    segment_docs: int = 50000    # references per segment file
    max_segments: int = 8        # more segments than this are merged into one on open
    chunk_docs: int = 500        # references featurised per worker task
    workers: int = 1             # processes featurising references (0: one per CPU)


# --- features ------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def load_vocabulary(name: str) -> frozenset[str]:
    if name == "none":
        return frozenset()
    if name != "moby":
        raise ValueError(f"features.vocabulary: unknown vocabulary {name!r} (moby or none)")
    from data.dictionaries import moby_path

    heads = set()
    with open(moby_path(), encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line.split(",", 1)[0].strip().lower()
            if head:
                heads.add(head)
    return frozenset(heads)


def _swappable(word: str, vocab: frozenset[str]) -> bool:
    """Whether a thesaurus spinner could look `word` up (as written or after crude suffix stripping)."""
    from data.spinners import SUFFIXES

    if word in vocab:
        return True
    for suffix, ending in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and word[: -len(suffix)] + ending in vocab:
            return True
    return False


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

    def text_features(self, text: str) -> tuple[set[str], np.ndarray]:
        return self.features(analyze(text, self.cfg.check_prose))


_WORKER: Featurizer | None = None


def _init_worker(cfg: FeaturesConfig):
    global _WORKER
    _WORKER = Featurizer(cfg)


def _featurize_chunk(texts: list[str]) -> list[tuple[list[str], np.ndarray]]:
    return [(sorted(i), w) for i, w in map(_WORKER.text_features, texts)]


# --- segments ------------------------------------------------------------------------------------

@dataclass
class Segment:
    rows: np.ndarray        # int64 sqlite row numbers
    imm_indptr: np.ndarray  # int64, len(rows)+1
    imm: np.ndarray         # int32 ids into `vocab`
    vocab: list[str]
    w_indptr: np.ndarray    # int64
    words: np.ndarray       # uint32 sorted per reference

    @classmethod
    def build(cls, rows: list[int], feats: list[tuple[list[str], np.ndarray]]) -> Segment:
        b = SegmentBuilder()
        for row, (toks, words) in zip(rows, feats):
            b.add(row, toks, words)
        return b.build()

    def save(self, path: Path):
        tmp = path.with_name(path.name + ".tmp")
        blob = np.frombuffer("\n".join(self.vocab).encode("utf-8", "surrogatepass"), dtype=np.uint8)
        with open(tmp, "wb") as f:
            np.savez(f, rows=self.rows, imm_indptr=self.imm_indptr, imm=self.imm, vocab=blob,
                     n_vocab=np.array([len(self.vocab)]), w_indptr=self.w_indptr, words=self.words)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Segment:
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_vocab"][0])
            vocab = z["vocab"].tobytes().decode("utf-8", "surrogatepass").split("\n") if n else []
            return cls(z["rows"], z["imm_indptr"], z["imm"], vocab, z["w_indptr"], z["words"])

    @classmethod
    def merge(cls, segs: list[Segment]) -> Segment:
        vocab: dict[str, int] = {}
        imms = []
        for s in segs:
            remap = np.array([vocab.setdefault(t, len(vocab)) for t in s.vocab], dtype=np.int32)
            imms.append(remap[s.imm] if len(s.imm) else s.imm)
        return cls(np.concatenate([s.rows for s in segs]), _cat_indptr([s.imm_indptr for s in segs]),
                   np.concatenate(imms).astype(np.int32), list(vocab), _cat_indptr([s.w_indptr for s in segs]),
                   np.concatenate([s.words for s in segs]))


class SegmentBuilder:
    """Collects references' features compactly (token ids, not strings) until they make a segment."""

    def __init__(self):
        self.rows: list[int] = []
        self.vocab: dict[str, int] = {}
        self.imm: list[np.ndarray] = []
        self.words: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: int, toks: list[str], words: np.ndarray):
        v = self.vocab
        self.rows.append(row)
        self.imm.append(np.fromiter((v.setdefault(t, len(v)) for t in toks), dtype=np.int32, count=len(toks)))
        self.words.append(words.astype(np.uint32, copy=False))

    def build(self) -> Segment:
        return Segment(np.asarray(self.rows, dtype=np.int64), _indptr([len(x) for x in self.imm]),
                       np.concatenate(self.imm) if self.imm else np.zeros(0, np.int32), list(self.vocab),
                       _indptr([len(w) for w in self.words]),
                       np.concatenate(self.words) if self.words else np.zeros(0, np.uint32))


def _indptr(lengths: list[int]) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _cat_indptr(parts: list[np.ndarray]) -> np.ndarray:
    out, base = [np.zeros(1, np.int64)], 0
    for p in parts:
        out.append(p[1:] + base)
        base += int(p[-1])
    return np.concatenate(out)


# --- the index -----------------------------------------------------------------------------------

@dataclass
class Candidate:
    row: int          # position in the index
    immutables: float  # IDF-weighted cosine of immutables
    words: float      # Jaccard of content-word sets
    containment: float  # share of the input's content words found in the reference


class IndexStateError(RuntimeError):
    pass


class ReferenceIndex:
    """Open (creating if needed) the index in `directory`."""

    def __init__(self, directory: str | Path, features: FeaturesConfig | None = None,
                 cfg: IndexConfig | None = None):
        self.dir = Path(directory)
        self.cfg = cfg or IndexConfig()
        self.featurizer = Featurizer(features or FeaturesConfig())
        (self.dir / "segments").mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.dir / "refs.sqlite"))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS refs (num INTEGER PRIMARY KEY AUTOINCREMENT, "
                        "id TEXT UNIQUE NOT NULL, title TEXT, text TEXT NOT NULL)")
        self.db.commit()
        self.manifest = self._read_manifest()
        fp = self.featurizer.fingerprint()
        if self.manifest.get("features") not in (None, fp):
            raise IndexStateError(f"index {self.dir} was built with other feature settings "
                              f"({self.manifest['features']}); use another index_dir or --rebuild")
        self.manifest["features"] = fp
        self._ids: set[str] | None = None
        segs = [Segment.load(self.dir / "segments" / name) for name in self.manifest["segments"]]
        if len(segs) > self.cfg.max_segments:
            segs = [self._compact(segs)]
        self._set_segments(segs)
        self._heal()

    # persistence

    def _read_manifest(self) -> dict:
        path = self.dir / "manifest.json"
        if not path.exists():
            return {"version": FORMAT_VERSION, "segments": [], "indexed_upto": 0, "next_segment": 1,
                    "sources": {}, "features": None}
        try:
            m = json.loads(path.read_text())
        except ValueError as e:
            raise IndexStateError(f"{path}: unreadable manifest: {e}") from e
        if m.get("version") != FORMAT_VERSION:
            raise IndexStateError(f"{path}: index format {m.get('version')}, expected {FORMAT_VERSION}; use --rebuild")
        return m

    def _write_manifest(self):
        path = self.dir / "manifest.json"
        tmp = path.with_name("manifest.json.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1))
        os.replace(tmp, path)

    def _new_segment(self, seg: Segment) -> str:
        name = f"seg-{self.manifest['next_segment']:06d}.npz"
        self.manifest["next_segment"] += 1
        seg.save(self.dir / "segments" / name)
        return name

    def _compact(self, segs: list[Segment]) -> Segment:
        merged = Segment.merge(segs)
        old = list(self.manifest["segments"])
        self.manifest["segments"] = [self._new_segment(merged)]
        self._write_manifest()
        for name in old:
            (self.dir / "segments" / name).unlink(missing_ok=True)
        return merged

    def _heal(self):
        """Index rows stored but not in a segment (a crash between the two writes)."""
        upto = self.manifest["indexed_upto"]
        pending = self.db.execute("SELECT num, text FROM refs WHERE num > ? ORDER BY num", (upto,)).fetchall()
        if pending:
            builder = SegmentBuilder()
            for num, text in pending:
                toks, words = self.featurizer.text_features(text)
                builder.add(num, sorted(toks), words)
            self._append_segment(builder)

    # in-memory structures

    def _set_segments(self, segs: list[Segment]):
        self.segments = segs
        seg = Segment.merge(segs) if len(segs) > 1 else (segs[0] if segs else Segment.build([], []))
        self.rows = seg.rows
        self.w_indptr, self.words = seg.w_indptr, seg.words
        self.vocab = {t: i for i, t in enumerate(seg.vocab)}
        n, v = len(seg.rows), len(seg.vocab)
        doc_of = np.repeat(np.arange(n, dtype=np.int32), np.diff(seg.imm_indptr))
        order = np.argsort(seg.imm, kind="stable")
        self.post_rows = doc_of[order]
        counts = np.bincount(seg.imm, minlength=v) if v else np.zeros(0, np.int64)
        self.post_indptr = _indptr(counts.tolist()) if v else np.zeros(1, np.int64)
        self.idf = np.log1p(n / np.maximum(counts, 1)) if v else np.zeros(0)
        self.idf_max = float(np.log1p(max(n, 1)))
        w2 = self.idf ** 2
        self.doc_norm = np.sqrt(np.bincount(doc_of, weights=w2[seg.imm], minlength=n)) if n else np.zeros(0)
        self.doc_norm[self.doc_norm == 0] = np.inf

    def __len__(self) -> int:
        return len(self.rows)

    # adding

    def ids(self) -> set[str]:
        if self._ids is None:
            self._ids = {r[0] for r in self.db.execute("SELECT id FROM refs")}
        return self._ids

    def source_unchanged(self, key: str, fingerprint: str) -> bool:
        return self.manifest["sources"].get(key) == fingerprint

    def mark_source(self, key: str, fingerprint: str):
        self.manifest["sources"][key] = fingerprint
        self._write_manifest()

    def add(self, records: Iterable, progress=None) -> Counter:
        """Add Records (inference.inputs) whose id is new; returns counts: added, existing, errors:<reason>."""
        counts: Counter = Counter()
        known = self.ids()
        pool = None
        workers = self.cfg.workers or os.cpu_count() or 1
        if workers > 1:
            import multiprocessing as mp

            pool = mp.get_context("fork").Pool(workers, _init_worker, (self.featurizer.cfg,))
        builder = SegmentBuilder()
        try:
            for batch in _batches(self._new(records, known, counts), self.cfg.chunk_docs * max(1, workers)):
                texts = [r.text for r in batch]
                if pool is not None:
                    size = self.cfg.chunk_docs
                    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
                    batch_feats = [f for part in pool.map(_featurize_chunk, chunks) for f in part]
                else:
                    batch_feats = [(sorted(i), w) for i, w in map(self.featurizer.text_features, texts)]
                with self.db:
                    for r, (toks, words) in zip(batch, batch_feats):
                        cur = self.db.execute("INSERT INTO refs (id, title, text) VALUES (?, ?, ?)",
                                              (r.id, r.title, r.text))
                        builder.add(cur.lastrowid, toks, words)
                counts["added"] += len(batch)
                if progress:
                    progress(len(batch))
                if len(builder) >= self.cfg.segment_docs:
                    self._append_segment(builder, rebuild=False)
                    builder = SegmentBuilder()
        finally:
            if pool is not None:
                pool.close()
                pool.join()
            if len(builder):
                self._append_segment(builder, rebuild=False)
            self._set_segments(self.segments if len(self.segments) <= self.cfg.max_segments
                               else [self._compact(self.segments)])
        return counts

    def _new(self, records, known: set[str], counts: Counter) -> Iterator:
        for r in records:
            if r.error is not None:
                counts[f"errors:{r.error.split(':')[0][:60]}"] += 1
            elif r.id in known:
                counts["existing"] += 1
            else:
                known.add(r.id)
                yield r

    def _append_segment(self, builder: SegmentBuilder, rebuild: bool = True):
        seg = builder.build()
        self.manifest["segments"].append(self._new_segment(seg))
        self.manifest["indexed_upto"] = max(self.manifest["indexed_upto"], max(builder.rows))
        self._write_manifest()
        self.segments = [*self.segments, seg]
        if rebuild:
            self._set_segments(self.segments)

    # searching

    def search(self, imm: set[str], words: np.ndarray, candidates: int, pool: int = 100,
               rerank_weight: float = 1.0) -> list[Candidate]:
        """Best `candidates` references for an input's features, best first: the `pool` best by immutables,
        re-ranked by immutables similarity + rerank_weight * word-set Jaccard."""
        n = len(self.rows)
        gids = np.array([self.vocab[t] for t in imm if t in self.vocab], dtype=np.int64)
        if n == 0 or len(gids) == 0:
            return []
        unknown = len(imm) - len(gids)
        starts, ends = self.post_indptr[gids], self.post_indptr[gids + 1]
        hits = np.concatenate([self.post_rows[a:b] for a, b in zip(starts.tolist(), ends.tolist())])
        w2 = self.idf[gids] ** 2
        dot = np.bincount(hits, weights=np.repeat(w2, ends - starts), minlength=n)
        qnorm = np.sqrt(w2.sum() + unknown * self.idf_max ** 2)
        cos = dot / (self.doc_norm * qnorm)
        k = min(max(pool, candidates), n)
        top = np.argpartition(-cos, k - 1)[:k] if k < n else np.arange(n)
        top = top[cos[top] > 0]
        if len(top) == 0:
            return []
        # Word-set similarity of every pooled candidate in one vectorised pass.
        starts, ends = self.w_indptr[top], self.w_indptr[top + 1]
        lens = ends - starts
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(int(lens.sum()))
        found = np.isin(self.words[idx], words)
        inter = np.bincount(np.repeat(np.arange(len(top)), lens), weights=found, minlength=len(top)).astype(np.int64)
        union = len(words) + lens - inter
        out = [Candidate(int(row), float(cos[row]), float(i / u) if u else 0.0, float(i / len(words)) if len(words) else 0.0)
               for row, i, u in zip(top.tolist(), inter.tolist(), union.tolist())]
        out.sort(key=lambda c: -(c.immutables + rerank_weight * c.words))
        return out[:candidates]

    def fetch(self, rows: list[int]) -> list[tuple[str, str | None, str]]:
        """(id, title, text) of index rows."""
        nums = [int(self.rows[r]) for r in rows]
        got = {}
        for i in range(0, len(nums), 500):
            part = nums[i:i + 500]
            q = f"SELECT num, id, title, text FROM refs WHERE num IN ({','.join('?' * len(part))})"
            got.update({num: (rid, title, text) for num, rid, title, text in self.db.execute(q, part)})
        return [got[n] for n in nums]

    def close(self):
        self.db.close()


def _batches(it: Iterable, size: int) -> Iterator[list]:
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def fingerprint_input(path: str) -> str | None:
    """A cheap fingerprint (names, sizes, mtimes) of a reference input, or None for stdin/missing."""
    from inference.inputs import ARTICLE_EXTS, STDIN

    if path == STDIN or not os.path.exists(path):
        return None
    h = hashlib.sha256()
    if os.path.isdir(path):
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                if os.path.splitext(fn)[1].lower() in ARTICLE_EXTS:
                    st = os.stat(os.path.join(dirpath, fn))
                    h.update(f"{os.path.relpath(os.path.join(dirpath, fn), path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        st = os.stat(path)
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()
