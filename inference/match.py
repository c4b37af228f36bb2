"""Reference mode: which known original was an article spun or copied from.

`python -m inference.match --references REFS --input INPUT... --output OUT.jsonl`

REFS (a directory of article files or a .jsonl/.csv of id, text, title) are indexed once into the
persisted index at `index_dir` (configs/match.yaml); a later run with new references only adds
those (ids already indexed are skipped; an input unchanged since it was last read is not re-read).
INPUT is read like `inference.score` reads it: one output record per input record, in input order;
a malformed line, a non-UTF-8 or binary file, an empty or oversized text, a missing id each give a
record with `error` set and the batch goes on. `--workers 2` matches in two forked processes sharing
the loaded index. Exit status is non-zero only when the command itself cannot run (bad arguments or
config, unreadable index, output not writable).

Record: {"id", "relation", "source", "candidates": [{"reference", "title", "relation", "retrieval",
"similarity", "alignment": [{input/reference offsets, "kind", "similarity", "substitutions",
"other_edits"}]}], "error"}. relation is spun_copy | verbatim_copy | partial_copy | independent |
no_match; offsets are character offsets into the input text and the reference text.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

from data import cli
from data import configfile as cfglib
from inference.align import AlignConfig, Doc, RelationConfig, align, analyze, figures, relation
from inference.io.batch import run_batch
from inference.io.inputs import Record, iter_records, make_record
from inference.io.outputs import check_not_an_input
from inference.references import (
    FeaturesConfig,
    IndexConfig,
    IndexStateError,
    ReferenceIndex,
    fingerprint_input,
    remove_index,
)
from inference.report import Report, match_row, summary_line

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "match.yaml"
RELATIONS = ("verbatim_copy", "spun_copy", "partial_copy", "independent", "no_match")
_RANK = {"verbatim_copy": 0, "spun_copy": 0, "partial_copy": 1, "independent": 2, "no_match": 3}


# Fields and types only: every value is in configs/match.yaml (data.configfile), so it is written once.
@dataclass
class RetrievalConfig:
    candidates: int  # references verified (aligned) per input
    pool: int  # best by immutables re-ranked by word-set similarity
    rerank_weight: float
    min_immutables: float  # candidates below this immutables similarity are not verified
    passage_candidates: int  # more references verified, found by passages of the input (partial copies)
    passage_words: int  # words per passage (consecutive prose sentences)
    passage_pool: int  # best per passage by immutables containment, re-ranked by word containment
    min_passage_immutables: int  # a passage with fewer immutables is not searched on its own
    reference_cache: int  # analysed references kept in memory (popular originals are matched often)


@dataclass
class OutputConfig:
    top_k: int  # candidates reported per input (no_match candidates are not reported)
    alignment: bool  # report the sentence alignment and substitutions


@dataclass
class MatchConfig:
    index_dir: str
    max_bytes: int
    workers: int  # processes matching inputs (forked, sharing the loaded index)
    features: FeaturesConfig
    index: IndexConfig
    retrieval: RetrievalConfig
    align: AlignConfig
    relation: RelationConfig
    output: OutputConfig


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> MatchConfig:
    path = Path(path) if path else DEFAULT
    cfg = cfglib.load(path, MatchConfig, overrides)
    if cfg.features.vocabulary not in ("moby", "none"):
        raise cfglib.ConfigError(f"features.vocabulary: expected moby or none, got {cfg.features.vocabulary!r} [in {path}]")
    if cfg.retrieval.candidates < 1 or cfg.output.top_k < 1:
        raise cfglib.ConfigError(f"retrieval.candidates and output.top_k must be >= 1 [in {path}]")
    return cfg


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
        found = self.index.search(query, r.candidates, r.pool, r.rerank_weight, r.passage_candidates, r.passage_pool,
                                  r.min_passage_immutables)
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


def run(inputs: list[str], output: str, references: list[str] | None = None, cfg: MatchConfig | None = None,
        index_dir: str | None = None, resume: bool = False, rebuild: bool = False, progress: bool = True,
        report: str | None = None) -> dict:
    """Index `references` (new ones only), then match `inputs` into `output` (and the HTML `report`); returns
    summary figures."""
    cfg = cfg or load_config()
    if output != "-" and not output.lower().endswith(".jsonl"):
        raise ValueError(f"output must end in .jsonl, or be - for stdout: {output}")
    for out in (output, report):  # before anything else: the writers truncate
        if out is not None:
            check_not_an_input(out, [*inputs, *(references or [])])
    directory = Path(index_dir or cfg.index_dir)
    if rebuild:
        remove_index(directory)
    t0 = time.time()
    summary: dict = {"references": {}, "records": 0, "errors": 0, "skipped": 0, **{r: 0 for r in RELATIONS}}
    with Matcher(cfg, directory) as m:
        if references:
            summary["references"] = dict(m.add_references(references, progress=progress))
        summary["indexed"] = len(m)
        summary["index_seconds"] = round(time.time() - t0, 2)
        if not inputs:
            return summary
        if len(m) == 0:
            raise ValueError(f"no references indexed in {directory}: pass --references (or check --index)")
        html = observe = None
        if report is not None:
            html = Report(report, "match", f"unspin reference mode: {', '.join(map(str, inputs))}")

            def observe(r: Record, rec: dict) -> None:  # the best candidate's text, from this process's index
                best = rec["candidates"][0]["reference"] if rec.get("candidates") else None
                html.add(match_row(rec), {"record": rec, "text": r.text, "reference": best and m.index.lookup(best)})
        t1 = time.time()
        counts = run_batch(inputs, output, lambda records: match_records(m, records, cfg.workers),
                           lambda rec: "errors" if rec["error"] else rec["relation"], cfg.max_bytes, resume,
                           progress, desc="matching", observe=observe)
        summary.update(counts)
        if html is not None:
            html.close(summary_line(counts, [*RELATIONS, "errors"]) + f"; {len(m):,} references indexed")
        seconds = time.time() - t1
        summary.update(match_seconds=round(seconds, 2),
                       articles_per_second=round(summary["records"] / max(seconds, 1e-9), 2))
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--references", "-r", nargs="+", default=[], metavar="REFS",
                    help="known originals to add to the index (directory, .jsonl, .csv)")
    ap.add_argument("--input", "-i", nargs="+", default=[], metavar="INPUT", help="articles to match")
    ap.add_argument("--output", "-o", metavar="OUT.jsonl", help="match records (.jsonl or - for stdout)")
    cli.config_args(ap, help="match config (default configs/match.yaml)")
    ap.add_argument("--index", metavar="DIR", help="index directory (default: index_dir in the config)")
    ap.add_argument("--rebuild", action="store_true", help="delete the index and index the references afresh")
    ap.add_argument("--resume", action="store_true",
                    help="carry on after the records already in OUT (per id, as many as it holds) and append")
    ap.add_argument("--workers", type=int, help="processes matching inputs (default: workers in the config)")
    ap.add_argument("--report", metavar="REPORT.html", help="also write an HTML page: each input beside its best "
                    "candidate, aligned sentences, substitutions highlighted in both (offline)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.input and not args.output:
        ap.error("--output is required with --input")
    if args.report and not args.input:
        ap.error("--report needs --input")
    if not args.input and not args.references:
        ap.error("nothing to do: give --references and/or --input")
    try:
        cfg = load_config(args.config, args.set)
        if args.workers is not None:
            cfg.workers = args.workers
        s = run(args.input, args.output or "-", args.references, cfg, args.index, args.resume, args.rebuild,
                progress=not args.quiet, report=args.report)
    except (cfglib.ConfigError, IndexStateError, ValueError) as e:
        return cli.fail(e)
    except Exception as e:  # noqa: BLE001 - the command cannot run (e.g. output not writable): say why
        return cli.fail(e, name_the_error=True)
    refs = s["references"]
    if refs:
        errors = sum(v for k, v in refs.items() if k.startswith("errors:"))
        print(f"references: {refs.get('added', 0)} added, {refs.get('existing', 0)} already indexed, "
              f"{errors} bad records, {refs.get('unchanged_inputs', 0)} unchanged inputs skipped; "
              f"{s['indexed']} indexed ({s['index_seconds']} s)", file=sys.stderr)
    if args.input:
        print(f"{s['records']} records: " + ", ".join(f"{s[r]} {r}" for r in RELATIONS) +
              f", {s['errors']} errors, {s['skipped']} skipped (resume); {s['articles_per_second']} articles/s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
