"""Matching articles against the reference index: `Matcher` (an open index plus the settings of
inference.matching.config: add references, match one article) and `match_records` (a batch, in forked
processes sharing the loaded index). `python -m inference.match` is the command around it.

Record: {"id", "relation", "source", "candidates": [{"reference", "title", "relation", "retrieval",
"similarity", "alignment": [{input/reference offsets, "kind", "similarity", "substitutions",
"other_edits"}]}], "error"}. relation is spun_copy | verbatim_copy | partial_copy | independent |
no_match; offsets are character offsets into the input text and the reference text.
"""
from __future__ import annotations

import os
import sys
from collections import Counter, OrderedDict
from pathlib import Path

from inference.io.inputs import Record, iter_records, make_record
from inference.matching.align import Doc, align, analyze
from inference.matching.config import MatchConfig, load_config
from inference.matching.index import ReferenceIndex, fingerprint_input
from inference.matching.relation import figures, relation

RELATIONS = ("verbatim_copy", "spun_copy", "partial_copy", "independent", "no_match")
_RANK = {"verbatim_copy": 0, "spun_copy": 0, "partial_copy": 1, "independent": 2, "no_match": 3}


class Matcher:
    """An open reference index plus the settings to match articles against it."""

    def __init__(self, cfg: MatchConfig | None = None, index_dir: str | Path | None = None):
        self.cfg = cfg or load_config()
        self.index = ReferenceIndex(index_dir or self.cfg.index_dir, self.cfg.features, self.cfg.index)
        self._cache: OrderedDict[int, tuple] = OrderedDict()

    def close(self):
        self.index.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self) -> int:
        return len(self.index)

    def _references(self, rows: list[int]) -> list[tuple[str, str | None, Doc]]:
        """(id, title, analysed text) of index rows; the last `reference_cache` are kept analysed."""
        missing = [r for r in dict.fromkeys(rows) if r not in self._cache]
        if missing:
            rare = self.index.featurizer.is_rare
            for r, (ref_id, title, text, spans) in zip(missing, self.index.fetch(missing)):
                self._cache[r] = (ref_id, title, analyze(text, self.cfg.features.check_prose, rare, spans))
        out = []
        for r in rows:
            self._cache.move_to_end(r)
            out.append(self._cache[r])
        while len(self._cache) > self.cfg.retrieval.reference_cache:
            self._cache.popitem(last=False)
        return out

    # references

    def add_references(self, inputs: list[str], progress: bool = False) -> Counter:
        """Index the records of `inputs` (paths as for iter_records) that are not indexed yet."""
        from tqdm import tqdm

        self._cache.clear()
        counts: Counter = Counter()
        with tqdm(unit="ref", file=sys.stderr, dynamic_ncols=True, desc="indexing", disable=not progress) as bar:
            for name in inputs:
                key, fp = os.path.abspath(name), fingerprint_input(name, self.cfg.max_bytes)
                if fp is not None and self.index.source_unchanged(key, fp):
                    counts["unchanged_inputs"] += 1
                    continue
                counts.update(self.index.add(iter_records([name], self.cfg.max_bytes), progress=bar.update,
                                             source=(key, fp) if fp else None))
        return counts

    def add_texts(self, items: list[tuple[str, str]] | list[Record]) -> Counter:
        """Index (id, text) pairs, checked as input records are (an empty, oversized or undecodable text is
        counted as an error, not indexed), or Records directly."""
        recs = [r if isinstance(r, Record) else make_record({"id": r[0], "text": r[1]}, str(r[0]), self.cfg.max_bytes)
                for r in items]
        self._cache.clear()
        return self.index.add(recs)

    # matching

    def match(self, text: str, rid: str | None = None) -> dict:
        """The match record of one article."""
        cfg = self.cfg
        rare = self.index.featurizer.is_rare
        doc = analyze(text, cfg.features.check_prose, rare)
        r = cfg.retrieval
        query = self.index.featurizer.query_features(doc, r.passage_words)
        found = self.index.search(query, r)
        found = [c for c in found if c.immutables >= r.min_immutables or c.words >= 0.3 or c.passage]
        cands = []
        for c, (ref_id, title, rdoc) in zip(found, self._references([c.row for c in found])):
            pairs = align(doc, rdoc, cfg.align)
            fig = figures(doc, rdoc, pairs)
            rel = relation(fig, c.immutables, cfg.relation)
            fig.pop("_copied_words")
            cand = {"reference": ref_id, "title": title, "relation": rel,
                    "retrieval": {"immutables": round(c.immutables, 4), "words": round(c.words, 4),
                                  "containment": round(c.containment, 4), "passage": c.passage},
                    "similarity": fig}
            if cfg.output.alignment:
                cand["alignment"] = [_pair_record(doc, rdoc, p) for p in pairs]
            cands.append(cand)
        cands = [c for c in cands if c["relation"] != "no_match"]
        cands.sort(key=lambda c: (_RANK[c["relation"]], -c["similarity"]["word_match"], -c["retrieval"]["immutables"]))
        cands = cands[: cfg.output.top_k]
        best = cands[0] if cands else None
        return {"id": rid, "relation": best["relation"] if best else "no_match",
                "source": best["reference"] if best and best["relation"] != "independent" else None,
                "candidates": cands, "error": None}


def _pair_record(inp, ref, p) -> dict:
    qs, rs = inp.sentences[p.q], ref.sentences[p.r]
    subs = [{k: v for k, v in e.items() if k != "swap"} for e in p.edits if e["swap"]]
    other = [{k: v for k, v in e.items() if k != "swap"} for e in p.edits if not e["swap"]]
    return {"input_start": qs.start, "input_end": qs.end, "reference_start": rs.start, "reference_end": rs.end,
            "kind": p.kind, "similarity": p.similarity, "substitutions": subs, "other_edits": other}


def error_record(rid: str, message: str) -> dict:
    return {"id": rid, "relation": None, "source": None, "candidates": [], "error": message}


def match_one(matcher: Matcher, r: Record) -> dict:
    if r.error is not None:
        return error_record(r.id, r.error)
    try:
        return matcher.match(r.text, r.id)
    except Exception as e:  # noqa: BLE001 - one bad text must not sink the batch
        return error_record(r.id, f"matching failed: {type(e).__name__}: {e}")


_MATCHER: Matcher | None = None


def _init_match_worker():
    _MATCHER.index.reconnect()  # a SQLite connection must not cross a fork


def _match_chunk(records: list[Record]) -> list[dict]:
    return [match_one(_MATCHER, r) for r in records]


def match_records(m: Matcher, records, workers: int = 1, chunk: int = 4):
    """Match records in input order, in `workers` processes (forked: they share the loaded index)."""
    global _MATCHER
    if workers <= 1:
        for r in records:
            yield match_one(m, r)
        return
    import multiprocessing as mp
    from collections import deque

    _MATCHER = m
    pool = mp.get_context("fork").Pool(workers, _init_match_worker)
    try:
        pending: deque = deque()
        batch: list[Record] = []
        for r in records:
            batch.append(r)
            if len(batch) >= chunk:
                pending.append(pool.apply_async(_match_chunk, (batch,)))
                batch = []
            while len(pending) > 4 * workers:  # bounded: the input is read as results are written
                yield from pending.popleft().get()
        if batch:
            pending.append(pool.apply_async(_match_chunk, (batch,)))
        while pending:
            yield from pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()
        _MATCHER = None
