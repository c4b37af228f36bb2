"""Benchmark of reference mode (`inference.match`): index 100,000 reference articles, answer queries.

    python bench/bench_match.py [--refs 100000] [--queries 700] [--workdir DIR] [--keep] [--dump BAD.jsonl]
    python bench/bench_match.py --workdir DIR --reuse [--set retrieval.candidates=3]   # queries only, again

References are synthesised from the BBC corpus (data root of configs/data.yaml, or UNSPIN_DATA_ROOT):
every indexed BBC original, MRPC "articles" (five sentence1s each), and variants of each original up
to --refs: per paragraph one of the original or its spins (four thesaurus spins, one lexicon spin,
data.build.make_spinners), some variants cut to an excerpt, some mixed with half of another article.
200 BBC articles are held out of the index.

Timed: indexing the reference JSONL through `Matcher.add_references` (workers from configs/match.yaml),
with peak RSS of the process and its workers (psutil); then matching queries one by one in this
process: new thesaurus and lexicon spins of indexed originals (spun_copy), originals wrapped in site
boilerplate (verbatim_copy), two paragraphs of an original among held-out text (partial_copy), held-out
BBC articles (a different article, often on the same topic: independent or no_match) and MRPC
sentence2 "articles" (the same events told by other outlets: must not be a copy); then the same queries
again through the batch path with two processes (`--workers 2`).
Prints articles indexed/s, index seconds, peak RSS, queries/s and per-kind accuracy; asserts no times.
Peak RSS sums the process and its workers, so pages they share (the index, after fork) count twice.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data import cli

cli.offline()

import psutil

from data import configfile as cfglib
from data.build import load_config as load_data_config
from data.build import paragraphs, stable_int
from data.spinners import Resources, make_spinners
from inference import match

HOLDOUT = 200
SPINS = 4  # thesaurus spins per paragraph (plus one lexicon spin)
TOP = "Home | News | Business | Sport | Weather\n\nBy Staff Reporter\n\nPublished 09:15 GMT, 4 May 2005\n\n"
BOTTOM = ("\n\nRelated Articles\n\nMarkets rally as rates hold\nMinister quits over row\n\nShare this story\n\n"
          "Copyright 2005 Example News. All rights reserved.")

_SPINNERS = None


def _init(data_cfg_path: str, lexicon: str):
    global _SPINNERS
    cfg = load_data_config(data_cfg_path)
    _SPINNERS = make_spinners(cfg.spinners, Resources(Path(lexicon), Counter()), {"moby", "lexicon"})


def _spin_article(item):
    """Paragraph spins of one article: {paragraph index: [thesaurus x SPINS, lexicon]}."""
    aid, text = item
    out = []
    for k, (s, e) in enumerate(paragraphs(text)):
        p = text[s:e]
        versions = [_SPINNERS["moby"].spin(p, stable_int("bench", aid, k, j)).text for j in range(SPINS)]
        versions.append(_SPINNERS["lexicon"].spin(p, stable_int("bench-lex", aid, k)).text)
        out.append((p, versions))
    return aid, out


def _spin_whole(item):
    aid, text, name, seed = item
    s = _SPINNERS[name].spin(text, seed)
    return aid, name, s.text, len(s.edits)


def read_corpora(root: Path):
    with open(root / "news/bbc_news.jsonl", encoding="utf-8") as f:
        bbc = [json.loads(line) for line in f if line.strip()]
    bbc = [a for a in bbc if isinstance(a.get("text"), str) and a["text"].strip()]
    # The corpus repeats about 150 articles under other ids: keep one of each, or a held-out article
    # would have its own copy in the index.
    seen, unique = set(), []
    for a in bbc:
        key = " ".join(a["text"].split())[:300].lower()
        if key not in seen:
            seen.add(key)
            unique.append(a)
    bbc = unique
    mrpc = []
    for name in ("mrpc_train.tsv", "mrpc_test.tsv"):
        with open(root / "paraphrase" / name, encoding="utf-8", newline="") as f:
            mrpc += [r for r in csv.DictReader(f, delimiter="\t") if r.get("sentence1") and r.get("sentence2")]
    return bbc, mrpc


def synthesise(refs_path: Path, n_refs: int, indexed, spun_paras, mrpc_groups, seed: int = 13) -> int:
    """Write the reference JSONL: originals, MRPC articles, then variants up to n_refs."""
    rng = random.Random(seed)
    n = 0
    with open(refs_path, "w", encoding="utf-8") as f:
        def put(rid, text, title=None):
            nonlocal n
            f.write(json.dumps({"id": rid, "title": title, "text": text}) + "\n")
            n += 1

        seen = set()
        for a in indexed:
            put(a["id"], a["text"], a.get("title"))
            seen.add(hash(a["text"]))
        for gid, group in mrpc_groups:
            put(gid, "\n\n".join(r["sentence1"] for r in group))
        ids = [a["id"] for a in indexed]
        for v in range(10 * max(1, -(-(n_refs - n) // len(indexed)))):
            for aid in ids:
                if n >= n_refs:
                    return n
                paras = spun_paras[aid]
                chosen = [rng.choice([orig, *versions]) for orig, versions in paras]
                u = rng.random()
                rid = f"{aid}~v{v}"
                if u < 0.15 and len(chosen) > 2:  # excerpt
                    k = rng.randint(max(1, len(chosen) // 2), len(chosen) - 1)
                    start = rng.randint(0, len(chosen) - k)
                    chosen = chosen[start:start + k]
                elif u < 0.3:  # mashup with the first half of another article (the id names both)
                    other_id = rng.choice(ids)
                    other = spun_paras[other_id]
                    half = [rng.choice([o, *vs]) for o, vs in other[: max(1, len(other) // 2)]]
                    chosen = chosen[: max(1, len(chosen) // 2)] + half
                    rid = f"{aid}~v{v}~mix~{other_id}"
                text = "\n\n".join(chosen)
                key = hash(text)
                if key in seen:  # e.g. every paragraph drawn as it was: a duplicate, not a variant
                    continue
                seen.add(key)
                put(rid, text)
    return n


class PeakRSS:
    """Samples the RSS of this process and its children; `peak` in bytes."""

    def __init__(self, interval=0.1):
        self.peak, self.interval, self._stop = 0, interval, threading.Event()
        self.proc = psutil.Process()

    def sample(self):
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self.sample()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.sample()


def build_queries(bbc_indexed, holdout, spun_whole, mrpc_groups, n_queries: int, seed: int = 7):
    rng = random.Random(seed)
    q = []  # (kind, id, text, expected source or None)
    share = {"spun_thesaurus": 0.3, "spun_lexicon": 0.12, "verbatim": 0.14, "partial": 0.14,
             "held_out": 0.15, "mrpc": 0.15}
    quota = {k: max(1, round(v * n_queries)) for k, v in share.items()}
    for aid, name, text, n_edits in spun_whole:
        kind = f"spun_{name}"
        if n_edits >= 3 and sum(1 for x in q if x[0] == kind) < quota[kind]:
            q.append((kind, f"q-{name}-{aid}", text, aid))
    for a in rng.sample(bbc_indexed, quota["verbatim"]):
        q.append(("verbatim", f"q-verbatim-{a['id']}", TOP + a["text"] + BOTTOM, a["id"]))
    # Two paragraphs of a longer original (at most a third of it) among three of a held-out article.
    long_enough = [a for a in bbc_indexed if len(paragraphs(a["text"])) >= 6]
    for a in rng.sample(long_enough, quota["partial"]):
        paras = [a["text"][s:e] for s, e in paragraphs(a["text"])]
        other = rng.choice(holdout)
        new = [other["text"][s:e] for s, e in paragraphs(other["text"])][:3]
        k = rng.randint(1, len(paras) - 2)
        if len(paras[k]) + len(paras[k + 1]) > len(a["text"]) / 3:
            k = min(range(len(paras) - 1), key=lambda i: len(paras[i]) + len(paras[i + 1]))
        q.append(("partial", f"q-partial-{a['id']}", "\n\n".join([new[0], paras[k], paras[k + 1], *new[1:]]), a["id"]))
    for a in holdout[: quota["held_out"]]:
        q.append(("held_out", f"q-held-{a['id']}", a["text"], None))
    for gid, group in mrpc_groups[: quota["mrpc"]]:
        q.append(("mrpc", f"q-{gid}", "\n\n".join(r["sentence2"] for r in group), None))
    rng.shuffle(q)
    return q


def in_family(ref_id: str | None, original: str) -> bool:
    """The original, one of its variants, or a mashup holding part of it."""
    if not ref_id:
        return False
    parts = ref_id.split("~")
    return parts[0] == original or (len(parts) == 4 and parts[2] == "mix" and parts[3] == original)


EXPECTED = {"spun_thesaurus": {"spun_copy"}, "spun_lexicon": {"spun_copy"}, "verbatim": {"verbatim_copy"},
            "partial": {"partial_copy"}, "held_out": {"independent", "no_match"}, "mrpc": {"independent", "no_match"}}


def synthesise_and_index(args, cfg, work: Path, refs_path: Path, index_dir: Path):
    data_cfg_path = str(ROOT / "configs/data.yaml")
    dcfg = load_data_config(data_cfg_path)
    root = cfglib.data_root(dcfg.data_root)
    if not root.is_absolute():
        root = (ROOT / root).resolve()
    lexicon = str(root / dcfg.sources.lexicon)
    shutil.rmtree(index_dir, ignore_errors=True)

    # --- synthesis (not timed) -------------------------------------------------------------------
    t0 = time.time()
    bbc, mrpc = read_corpora(root)
    rng = random.Random(13)
    order = list(range(len(bbc)))
    rng.shuffle(order)
    holdout = [bbc[i] for i in order[:HOLDOUT]]
    indexed = [bbc[i] for i in sorted(order[HOLDOUT:])]
    mrpc_groups = [(f"mrpc-article-{i // 5}", mrpc[i:i + 5]) for i in range(0, len(mrpc) - 4, 5)]
    pool = get_context("fork").Pool(2, _init, (data_cfg_path, lexicon))
    spun_paras = dict(pool.imap_unordered(_spin_article, [(a["id"], a["text"]) for a in indexed], chunksize=8))
    qrng = random.Random(99)
    picks = qrng.sample(indexed, min(len(indexed), args.queries))
    whole = [(a["id"], a["text"], "thesaurus", 1_000 + i) for i, a in enumerate(picks)]
    whole += [(a["id"], a["text"], "lexicon", 2_000 + i) for i, a in enumerate(picks)]
    spun_whole = pool.map(_spin_whole, whole, chunksize=8)
    pool.close()
    pool.join()
    n = synthesise(refs_path, args.refs, indexed, spun_paras, mrpc_groups)
    queries = build_queries(indexed, holdout, spun_whole, mrpc_groups, args.queries)
    del spun_paras
    print(f"synthesised {n} references ({refs_path.stat().st_size / 1e6:.0f} MB) and {len(queries)} queries "
          f"in {time.time() - t0:.0f} s", flush=True)

    # --- indexing (timed) ------------------------------------------------------------------------
    with PeakRSS() as mem:
        t1 = time.time()
        m = match.Matcher(cfg, index_dir)
        counts = m.add_references([str(refs_path)])
        index_seconds = time.time() - t1
    disk = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    print(f"indexed {len(m)} references ({dict(counts)}) in {index_seconds:.1f} s: "
          f"{len(m) / index_seconds:.0f} articles/s; peak RSS {mem.peak / 2**20:.0f} MB "
          f"(process + {cfg.index.workers} workers); index on disk {disk / 2**20:.0f} MB", flush=True)
    m.close()

    return n, queries, index_seconds, mem


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=700)
    ap.add_argument("--config", default=str(ROOT / "configs/match.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--workdir", help="where the reference JSONL and the index go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--dump", help="write queries whose relation or source is wrong to this JSONL")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the references, index and queries of an earlier run in --workdir (times queries only)")
    args = ap.parse_args(argv)
    if args.reuse and not args.workdir:
        ap.error("--reuse needs --workdir")

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-match-"))
    work.mkdir(parents=True, exist_ok=True)
    refs_path, index_dir, queries_path = work / "refs.jsonl", work / "index", work / "queries.jsonl"
    cfg = match.load_config(args.config, args.set)
    if args.reuse:
        with open(queries_path, encoding="utf-8") as f:
            queries = [tuple(json.loads(line)) for line in f]
        n, index_seconds, mem = None, None, None
    else:
        n, queries, index_seconds, mem = synthesise_and_index(args, cfg, work, refs_path, index_dir)
        with open(queries_path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(q) + "\n" for q in queries)

    # --- queries (timed) -------------------------------------------------------------------------
    with PeakRSS() as qmem:
        t2 = time.time()
        m = match.Matcher(cfg, index_dir)
        open_seconds = time.time() - t2
        results = []
        t3 = time.time()
        for kind, qid, text, src in queries:
            results.append((kind, src, m.match(text, qid)))
        query_seconds = time.time() - t3
        m.close()
    qps = len(queries) / query_seconds
    print(f"opened the index in {open_seconds:.1f} s; matched {len(queries)} queries in {query_seconds:.1f} s: "
          f"{qps:.1f} queries/s (one process); peak RSS {qmem.peak / 2**20:.0f} MB", flush=True)
    # The same queries through the batch path with two processes (python -m inference.match --workers 2).
    with PeakRSS() as pmem:
        m = match.Matcher(cfg, index_dir)
        recs = [match.Record(id=qid, text=text) for _, qid, text, _ in queries]
        t4 = time.time()
        parallel = list(match.match_records(m, iter(recs), workers=2))
        par_seconds = time.time() - t4
        m.close()
    qps2 = len(parallel) / par_seconds
    same = sum(a[2]["relation"] == b["relation"] and a[2]["source"] == b["source"] for a, b in zip(results, parallel))
    print(f"matched them again with 2 processes in {par_seconds:.1f} s: {qps2:.1f} queries/s; peak RSS "
          f"{pmem.peak / 2**20:.0f} MB (process + workers); {same}/{len(parallel)} records agree", flush=True)

    # --- accuracy --------------------------------------------------------------------------------
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for kind, src, rec in results:
        c = by_kind[kind]
        c["n"] += 1
        c[rec["relation"]] += 1
        c["relation_ok"] += rec["relation"] in EXPECTED[kind]
        if src is not None:
            # The original among the reported candidates with the expected relation (the top one may be one
            # of its synthesised variants that happens to be closer to the query).
            c["original_listed"] += any(x["reference"] == src and x["relation"] in EXPECTED[kind]
                                        for x in rec["candidates"])
            c["source_exact"] += rec["source"] == src
            c["source_family"] += in_family(rec["source"], src)
            c["both_ok"] += rec["relation"] in EXPECTED[kind] and rec["source"] == src
        else:
            c["spun_copy_called"] += rec["relation"] == "spun_copy"
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            for (kind, src, rec), (_, _, text, _) in zip(results, queries):
                if rec["relation"] not in EXPECTED[kind] or (src is not None and rec["source"] != src):
                    f.write(json.dumps({"kind": kind, "expected_source": src, "text": text, "record": rec}) + "\n")
    print("\nrelation ok: the top candidate's relation is the expected one; source exact: the top candidate is\n"
          "the original; source family: it is the original, one of its variants or a mashup holding part of it;\n"
          "original listed: the original"
          " is among the reported candidates with the expected relation.\n")
    print("kind            n  relation ok  source exact  source family  original listed  relations")
    for kind in EXPECTED:
        c = by_kind.get(kind)
        if not c:
            continue
        rels = ", ".join(f"{r} {c[r]}" for r in match.RELATIONS if c[r])
        has_src = kind not in ("held_out", "mrpc")
        exact = f"{c['source_exact'] / c['n']:.3f}" if has_src else "-"
        fam = f"{c['source_family'] / c['n']:.3f}" if has_src else "-"
        listed = f"{c['original_listed'] / c['n']:.3f}" if has_src else "-"
        print(f"{kind:14s} {c['n']:4d}  {c['relation_ok'] / c['n']:10.3f}  {exact:>12s}  {fam:>13s}  {listed:>15s}  {rels}")
    if n is not None:
        print(f"\nSUMMARY refs={n} index_seconds={index_seconds:.1f} articles_per_second={n / index_seconds:.0f} "
              f"peak_rss_mb={mem.peak / 2**20:.0f} queries_per_second={qps:.1f} queries_per_second_2proc={qps2:.1f}")
    else:
        print(f"\nSUMMARY (reused index) queries_per_second={qps:.1f} queries_per_second_2proc={qps2:.1f}")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
