"""The persisted, appendable index of known originals behind `inference.match`: opening, adding, healing
and searching (features: inference.matching.features; files and segments: inference.matching.store;
featurising in worker processes: inference.matching.feature_workers; settings: inference.matching.config).

Adding references appends rows and one segment; existing references are never re-read or re-tokenised
(opening the index rebuilds the in-memory postings from the segments' integer arrays: about a second
for 100,000 references). Every write (creating, adding, healing, merging) holds the writer lock
(`.lock`) and starts from the index as the last writer left it; files are replaced by renaming a
synced temporary file of their own. So any number of processes may open and add at once: writers take
turns and lose nothing, readers never wait. A crash between the two writes of an add leaves rows
without a segment: the next writer (or the next open, when no one is writing) indexes them from the
stored text. Opening creates nothing: only adding creates an index.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.io.inputs import ARTICLE_EXTS, STDIN
from inference.matching.config import IndexConfig, RetrievalConfig, load_config
from inference.matching.feature_workers import featurized
from inference.matching.features import FeaturesConfig, Featurizer, QueryFeatures, unpack_spans
from inference.matching.store import (
    FORMAT_VERSION,
    SCHEMA,
    TMP_SUFFIX,
    IndexStateError,
    Segment,
    SegmentBuilder,
    atomic_write,
    empty_manifest,
    foreign_entries,
    indptr,
    is_index,
)


@dataclass
class Candidate:
    row: int          # position in the index
    immutables: float  # IDF-weighted cosine of immutables
    words: float      # Jaccard of content-word sets
    containment: float  # share of the input's content words found in the reference
    passage: float | None = None  # found by a passage of the input: its best passage score


class ReferenceIndex:
    """The index in `directory`. Opening it writes nothing (a directory that holds no index reads as an
    empty one and is not created) unless the index needs upkeep that no other process is doing: rows a
    crashed writer stored without features, or more than `max_segments` segments. Adding creates the
    index, in a new or empty directory only.

    Every write (creating, healing, compacting, adding) holds the writer lock (`.lock`) and starts from
    the index as the last writer left it, so processes can open and add to one index at once: writers
    take turns, readers never wait."""

    def __init__(self, directory: str | Path, features: FeaturesConfig | None = None,
                 cfg: IndexConfig | None = None):
        self.dir = Path(directory)
        if features is None or cfg is None:  # what is not given comes from configs/match.yaml
            default = load_config()
            features, cfg = features or default.features, cfg or default.index
        self.cfg = cfg
        self.featurizer = Featurizer(features)
        self.db: sqlite3.Connection | None = None
        self.manifest = {**empty_manifest(), "features": self.featurizer.fingerprint()}
        self._on_disk, self._ids = empty_manifest(), None
        self._set_segments([])
        if not is_index(self.dir):
            return
        self._connect()
        self._load()
        if self._upkeep_due():
            with self._locked(wait=False) as got:  # busy: its holder is writing, and heals as it goes
                if got:
                    self._sync()
                    self._upkeep()

    # persistence

    def _connect(self):
        # mode=rw: open the existing database, never create one
        self.db = sqlite3.connect((self.dir / "refs.sqlite").resolve().as_uri() + "?mode=rw", uri=True)

    def _create(self):
        """Create the index (under the writer lock) in a new or empty directory, never in one holding
        anything else: a mistyped path must not turn someone's directory into an index."""
        if self.dir.exists() and not self.dir.is_dir():
            raise IndexStateError(f"{self.dir} is not a directory: cannot create a reference index there")
        if self.dir.is_dir() and not is_index(self.dir) and (foreign := foreign_entries(self.dir)):
            raise IndexStateError(f"{self.dir} is not an unspin reference index and not empty ({', '.join(foreign[:3])}"
                                  f"{'...' if len(foreign) > 3 else ''}): not creating one in it; check --index")
        (self.dir / "segments").mkdir(parents=True, exist_ok=True)
        with self._locked():
            if not is_index(self.dir):  # else another process created it meanwhile
                # Built under a temporary name and renamed: no process ever sees a database without its table.
                fd, tmp = tempfile.mkstemp(dir=self.dir, prefix="refs.sqlite.", suffix=TMP_SUFFIX)
                os.close(fd)
                db = sqlite3.connect(tmp)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(SCHEMA)
                db.commit()
                db.close()
                os.replace(tmp, self.dir / "refs.sqlite")
                self._write_manifest()
        self._connect()
        self.db.execute(SCHEMA)  # an older version's database, created on open and never added to

    @contextmanager
    def _locked(self, wait: bool = True):
        """The writer lock; yields whether it was taken (always, when `wait`)."""
        with open(self.dir / ".lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _load(self):
        """The manifest and its segments as on disk."""
        while True:
            m = self._read_manifest()
            try:
                segs = [Segment.load(self.dir / "segments" / name) for name in m["segments"]]
                break
            except FileNotFoundError:
                if self._read_manifest() == m:
                    raise IndexStateError(f"{self.dir}: a segment listed in manifest.json is missing; use --rebuild")
                # else a writer compacted the segments between the two reads: read its manifest
        fp = self.featurizer.fingerprint()
        if m.get("features") not in (None, fp):
            raise IndexStateError(f"index {self.dir} was built with other feature settings "
                                  f"({m['features']}); use another index_dir or --rebuild")
        self._on_disk, self.manifest, self._ids = m, {**m, "features": fp}, None
        self._set_segments(segs)

    def _sync(self):
        """Under the writer lock: catch up with what other processes wrote since this one read the index."""
        if self._read_manifest() != self._on_disk:
            self._load()

    def _upkeep_due(self) -> bool:
        return len(self.manifest["segments"]) > self.cfg.max_segments or self._unindexed_rows()

    def _upkeep(self):
        """Under the writer lock: index rows stored without features (a crash between the two writes),
        merge segments past `max_segments`, and remove temporary files a crashed writer left."""
        for tmp in [*self.dir.glob("*" + TMP_SUFFIX), *(self.dir / "segments").glob("*" + TMP_SUFFIX)]:
            tmp.unlink(missing_ok=True)
        if len(self.manifest["segments"]) > self.cfg.max_segments:
            self._set_segments([self._compact(self.segments)])
        if self._unindexed_rows():
            self._heal()

    def _unindexed_rows(self) -> bool:
        return self.db.execute("SELECT EXISTS (SELECT 1 FROM refs WHERE num > ?)",
                               (self.manifest["indexed_upto"],)).fetchone()[0] == 1

    def _read_manifest(self) -> dict:
        path = self.dir / "manifest.json"
        if not path.exists():
            return empty_manifest()
        try:
            m = json.loads(path.read_text())
        except ValueError as e:
            raise IndexStateError(f"{path}: unreadable manifest: {e}") from e
        if m.get("version") != FORMAT_VERSION:
            raise IndexStateError(f"{path}: index format {m.get('version')}, expected {FORMAT_VERSION}; use --rebuild")
        return m

    def _write_manifest(self):
        atomic_write(self.dir / "manifest.json", lambda f: f.write(json.dumps(self.manifest, indent=1).encode()))
        self._on_disk = json.loads(json.dumps(self.manifest))

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
        """Index rows stored but not in a segment."""
        upto = self.manifest["indexed_upto"]
        pending = self.db.execute("SELECT num, text FROM refs WHERE num > ? ORDER BY num", (upto,)).fetchall()
        if pending:
            builder = SegmentBuilder()
            with self.db:
                for num, text in pending:
                    toks, words, spans, shingles = self.featurizer.index_features(text)
                    self.db.execute("UPDATE refs SET spans = ? WHERE num = ?", (spans, num))
                    builder.add(num, toks, words, shingles)
            self._append_segment(builder)

    # in-memory structures

    def _set_segments(self, segs: list[Segment]):
        self.segments = segs
        seg = Segment.merge(segs) if len(segs) > 1 else (segs[0] if segs else Segment.empty())
        self.rows = seg.rows
        self.w_indptr, self.words = seg.w_indptr, seg.words
        self.vocab = {t: i for i, t in enumerate(seg.vocab)}
        n, v = len(seg.rows), len(seg.vocab)
        doc_of = np.repeat(np.arange(n, dtype=np.int32), np.diff(seg.imm_indptr))
        order = np.argsort(seg.imm, kind="stable")
        self.post_rows = doc_of[order]
        counts = np.bincount(seg.imm, minlength=v) if v else np.zeros(0, np.int64)
        self.post_indptr = indptr(counts.tolist()) if v else np.zeros(1, np.int64)
        self.idf = np.log1p(n / np.maximum(counts, 1)) if v else np.zeros(0)
        self.idf_max = float(np.log1p(max(n, 1)))
        self.max_postings = max(self.cfg.min_common_df, int(self.cfg.common_share * n))
        w2 = self.idf ** 2
        self.doc_norm = np.sqrt(np.bincount(doc_of, weights=w2[seg.imm], minlength=n)) if n else np.zeros(0)
        self.doc_norm[self.doc_norm == 0] = np.inf
        # Shingle postings: the distinct sampled 3-gram hashes, sorted, and the references holding each.
        s_doc = np.repeat(np.arange(n, dtype=np.int32), np.diff(seg.s_indptr))
        order = np.argsort(seg.shingles, kind="stable")
        self.sh_vals, first = np.unique(seg.shingles[order], return_index=True)
        self.sh_indptr = np.append(first, len(order)).astype(np.int64)
        self.sh_rows = s_doc[order]

    def __len__(self) -> int:
        return len(self.rows)

    # adding

    def ids(self) -> set[str]:
        if self._ids is None:
            self._ids = {r[0] for r in self.db.execute("SELECT id FROM refs")}
        return self._ids

    def source_unchanged(self, key: str, fingerprint: str) -> bool:
        return self.manifest["sources"].get(key) == fingerprint

    def add(self, records: Iterable, progress=None, source: tuple[str, str] | None = None) -> Counter:
        """Add Records (inference.io.inputs) whose id is new; returns counts: added, existing, errors:<reason>.
        `source` (key, fingerprint) marks the input they came from as read, once they are all stored.
        Creates the index if there is none yet; waits while another process writes to it."""
        counts: Counter = Counter()
        if self.db is None:
            self._create()
        with self._locked():
            try:
                self._sync()
                self._upkeep()
                self._add(records, progress, counts)
                if source is not None:
                    self.manifest["sources"][source[0]] = source[1]
                    self._write_manifest()
                return counts
            except BaseException:
                self._ids = None  # ids of records read but not stored must not count as indexed
                raise

    def _add(self, records, progress, counts: Counter) -> Counter:
        known = self.ids()
        workers = self.cfg.workers or os.cpu_count() or 1
        builder = SegmentBuilder()

        def store(batch, feats):
            nonlocal builder
            # A failed batch is rolled back (and its row numbers reused): only committed rows join the segment.
            with self.db:
                nums = [self.db.execute("INSERT INTO refs (id, title, text, spans) VALUES (?, ?, ?, ?)",
                                        (r.id, r.title, r.text, f[2])).lastrowid for r, f in zip(batch, feats)]
            for num, (toks, words, _, shingles) in zip(nums, feats):
                builder.add(num, toks, words, shingles)
            counts["added"] += len(batch)
            if progress:
                progress(len(batch))
            if len(builder) >= self.cfg.segment_docs:
                self._append_segment(builder, rebuild=False)
                builder = SegmentBuilder()

        try:
            # closing: whatever happens, the worker processes are closed and joined before the segment is written
            with closing(featurized(self._new(records, known, counts), self.featurizer, self.cfg.chunk_docs,
                                    workers)) as done:
                for batch, feats in done:
                    store(batch, feats)
        finally:
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

    def _dot(self, imm: set[str]) -> tuple[np.ndarray, float] | None:
        """IDF^2-weighted overlap of `imm` with every reference, and the weight of `imm` itself."""
        # Sorted: a set's order varies from process to process, and so would the float sums below.
        gids = np.array(sorted(self.vocab[t] for t in imm if t in self.vocab), dtype=np.int64)
        if len(self.rows) == 0 or len(gids) == 0:
            return None
        w2 = self.idf[gids] ** 2
        total = float(w2.sum() + (len(imm) - len(gids)) * self.idf_max ** 2)
        starts, ends = self.post_indptr[gids], self.post_indptr[gids + 1]
        # Tokens in very many references ("UK", "2004") weigh little and cost most: they count in the
        # weight of `imm` but their references are not gathered.
        keep = (ends - starts) <= self.max_postings
        if not keep.any():
            return None
        starts, ends, w2 = starts[keep], ends[keep], w2[keep]
        hits = np.concatenate([self.post_rows[a:b] for a, b in zip(starts.tolist(), ends.tolist())])
        dot = np.bincount(hits, weights=np.repeat(w2, ends - starts), minlength=len(self.rows))
        return dot, total

    def _word_overlap(self, rows: np.ndarray, words: np.ndarray) -> np.ndarray:
        """How many of `words` each reference in `rows` has (one vectorised pass)."""
        starts, ends = self.w_indptr[rows], self.w_indptr[rows + 1]
        lens = ends - starts
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(int(lens.sum()))
        found = np.isin(self.words[idx], words)
        return np.bincount(np.repeat(np.arange(len(rows)), lens), weights=found, minlength=len(rows)).astype(np.int64)

    def _shingle_hits(self, shingles: np.ndarray) -> np.ndarray | None:
        """How many of `shingles` each reference has."""
        if len(self.sh_vals) == 0:
            return None
        idx = np.searchsorted(self.sh_vals, shingles)
        ok = idx < len(self.sh_vals)
        idx = idx[ok][self.sh_vals[idx[ok]] == shingles[ok]]
        if len(idx) == 0:
            return None
        starts, ends = self.sh_indptr[idx], self.sh_indptr[idx + 1]
        hits = np.concatenate([self.sh_rows[a:b] for a, b in zip(starts.tolist(), ends.tolist())])
        return np.bincount(hits, minlength=len(self.rows))

    @staticmethod
    def _top(scores: np.ndarray, k: int) -> np.ndarray:
        """Indices of the (at most) k best positive scores, in no particular order."""
        nz = np.flatnonzero(scores > 0)  # few references share anything: partition only those
        if len(nz) <= k:
            return nz
        return nz[np.argpartition(-scores[nz], k - 1)[:k]]

    def search(self, query: QueryFeatures, retrieval: RetrievalConfig) -> list[Candidate]:
        """References to verify for an input, best first (settings: the `retrieval:` section of
        configs/match.yaml).

        `candidates` by the whole text: the `pool` best by immutables (IDF-weighted cosine), re-ranked by
        cosine + rerank_weight * word-set Jaccard. Then up to `passage_candidates` more by its passages
        (a few sentences each): for each, the `passage_pool` references holding most of its immutables
        (IDF-weighted containment) re-ranked with the share of its words they hold. These find the
        source of a partial copy, whose few copied paragraphs are outweighed by the rest of the text."""
        candidates, pool, rerank_weight = retrieval.candidates, retrieval.pool, retrieval.rerank_weight
        chunk_candidates, chunk_pool = retrieval.passage_candidates, retrieval.passage_pool
        got = self._dot(query.imm)
        if got is None:
            return []
        dot, qw = got
        cos = dot / (self.doc_norm * np.sqrt(qw))
        top = self._top(cos, max(pool, candidates))
        if len(top) == 0:
            return []
        words = query.words
        out = self._candidates(top, words, cos)
        out.sort(key=lambda c: (-(c.immutables + rerank_weight * c.words), c.row))  # ties: the earlier reference
        out = out[:candidates]
        if chunk_candidates <= 0:
            return out
        best: dict[int, float] = {}
        for imm, cwords, cshingles in query.chunks:
            # References holding most of the passage's immutables (IDF-weighted), and most of its 3-grams.
            contain = None
            if len(imm) >= retrieval.min_passage_immutables and (got := self._dot(imm)) is not None:
                contain = got[0] / got[1]
            shared = self._shingle_hits(cshingles) if len(cshingles) >= 2 else None
            pools = []
            if contain is not None:
                pools.append(self._top(contain, chunk_pool))
            if shared is not None:
                top_sh = self._top(shared.astype(np.float64), chunk_pool)
                pools.append(top_sh[shared[top_sh] >= 2])
            if not pools:
                continue
            ctop = np.unique(np.concatenate(pools))
            if len(ctop) == 0:
                continue
            share = self._word_overlap(ctop, cwords) / max(1, len(cwords))
            c_imm = contain[ctop] if contain is not None else np.zeros(len(ctop))
            c_sh = shared[ctop] / len(cshingles) if shared is not None else np.zeros(len(ctop))
            for row, c, sh, w in zip(ctop.tolist(), c_imm.tolist(), c_sh.tolist(), share.tolist()):
                score = max(c, sh) + rerank_weight * w
                if score > best.get(row, 0.0):
                    best[row] = score
        chosen = {c.row for c in out}
        extra = [row for row in sorted(best, key=lambda r: (-best[r], r)) if row not in chosen][:chunk_candidates]
        if extra:
            out += self._candidates(np.array(extra, dtype=np.int64), words, cos, [round(best[r], 4) for r in extra])
        return out

    def _candidates(self, rows: np.ndarray, words: np.ndarray, cos: np.ndarray,
                    passages: list[float] | None = None) -> list[Candidate]:
        """Candidates for `rows`: immutables cosine, and the Jaccard and containment of the input's `words`."""
        inter = self._word_overlap(rows, words).tolist()
        lens = (self.w_indptr[rows + 1] - self.w_indptr[rows]).tolist()
        n = len(words)
        return [Candidate(row, float(cos[row]), i / (n + ln - i) if n + ln - i else 0.0, i / n if n else 0.0, p)
                for row, i, ln, p in zip(rows.tolist(), inter, lens, passages or [None] * len(rows))]

    def fetch(self, rows: list[int]) -> list[tuple[str, str | None, str, list | None]]:
        """(id, title, text, sentence spans) of index rows."""
        nums = [int(self.rows[r]) for r in rows]
        got = {}
        for i in range(0, len(nums), 500):
            part = nums[i:i + 500]
            q = f"SELECT num, id, title, text, spans FROM refs WHERE num IN ({','.join('?' * len(part))})"
            got.update({num: (rid, title, text, unpack_spans(sp)) for num, rid, title, text, sp in self.db.execute(q, part)})
        return [got[n] for n in nums]

    def lookup(self, ref_id: str) -> dict | None:
        """{"id", "title", "text"} of the reference `ref_id`, or None (the match report's second column)."""
        row = self.db.execute("SELECT title, text FROM refs WHERE id = ?", (ref_id,)).fetchone()
        return None if row is None else {"id": ref_id, "title": row[0], "text": row[1]}

    def reconnect(self):
        """A fresh SQLite connection (in a forked process)."""
        if self.db is not None:
            self._connect()

    def close(self):
        if self.db is not None:
            self.db.close()



def fingerprint_input(path: str, max_bytes: int) -> str | None:
    """A cheap fingerprint (names, sizes, mtimes of the files `iter_records` reads, and `max_bytes`, which
    decides which records are accepted) of a reference input, or None for stdin/missing."""
    if path == STDIN or not os.path.exists(path):
        return None
    h = hashlib.sha256(f"{max_bytes}\n".encode())
    if os.path.isdir(path):
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                # The files inputs._iter_directory reads (not a dangling link, FIFO or dot-file).
                if not fn.startswith(".") and os.path.splitext(fn)[1].lower() in ARTICLE_EXTS and os.path.isfile(full):
                    st = os.stat(full)
                    h.update(f"{os.path.relpath(full, path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        st = os.stat(path)
        h.update(f"{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()

