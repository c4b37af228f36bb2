"""Build the aligned (original, spun) dataset: `python -m data.build --config configs/data.yaml`.

Writes a `datasets.DatasetDict` (train/validation/test, split by source document), a dataset card
(card.json and README.md), the families' swap tables and general alternatives per word to the configured
output directory.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from data import cli
from data import configfile as cfglib
from data.corpora import MissingCorpus, clean_text, read_jsonl, read_tsv, require, sha256
from data.dictionaries import Thesaurus, load_moby, load_wordnet, wordnet_lemmas
from data.spinners import FAMILIES, Resources, SpinnersConfig, Spun, make_spinners, word_labels
from data.text import is_word, sentences, words

TABLES = "tables.json.gz"  # beside the dataset: {family: {word or phrase: [swaps]}}
ALTERNATIVES = "alternatives.json.gz"  # beside it: {family: {word: [general alternatives, best first]}}


def recipe(cfg: DataConfig) -> dict:
    """The settings that decide what the dataset holds; where it is written does not change it."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k != "output_dir"}


def load_tables(output_dir: str) -> dict[str, dict[str, list[str]]]:
    with gzip.open(Path(output_dir) / TABLES, "rt", encoding="utf-8") as f:
        return json.load(f)


def load_alternatives(output_dir: str) -> dict[str, dict[str, list[str]]]:
    """{family: {word: [alternatives, best first]}}: the general resources behind the moby and wordnet
    families, keyed by family so a model held out of one drops its resource as it drops its table."""
    with gzip.open(Path(output_dir) / ALTERNATIVES, "rt", encoding="utf-8") as f:
        return json.load(f)


# Fields and types only: every value is in configs/data.yaml (data.configfile), so it is written once.

@dataclass
class SourcesConfig:
    bbc: str
    ag_news: str
    msr: str
    mrpc: list[str]
    paws: list[str]
    lexicon: str
    clean: dict[str, str]  # domain -> clean human paragraphs (`id, doc, text, source` a line)


@dataclass
class FamilyDraw:
    """Which families spin an original: `per_original` drawn by weight, plus every family in `always`."""

    weights: dict[str, float]
    per_original: int
    always: list[str]


@dataclass
class SentenceConfig:
    originals: dict[str, int]  # sentence originals drawn per corpus
    min_words: int
    max_words: int
    verbatim_share: float  # originals also emitted as a verbatim copy (label clean)
    mrpc_max: int
    paws_max: int
    families: FamilyDraw


@dataclass
class ParagraphConfig:
    originals: int  # runs of consecutive BBC paragraphs
    min_words: int
    max_words: int
    families: FamilyDraw


@dataclass
class CleanConfig:
    originals_per_domain: int  # paragraphs drawn per clean domain
    families: FamilyDraw


@dataclass
class AlternativesConfig:
    moby_keep: int  # Moby mutual synonyms kept per word, best ranked first
    wordnet_senses: int  # lemmas of the word's first senses (WordNet's order, every part of speech)


@dataclass
class ArticleConfig:
    max_articles: int
    splits: list[str]  # documents with articles
    partial_share: list[float]  # share of paragraphs spun
    min_edits: int  # an article variant with fewer swaps is not emitted (one phrase is not a spun article)
    families: FamilyDraw
    partial_families: FamilyDraw


@dataclass
class DataConfig:
    data_root: str  # UNSPIN_DATA_ROOT overrides
    output_dir: str
    seed: int
    splits: dict[str, float]
    max_chars: int
    tables_min_count: int  # families' swap tables cover the words seen this often in the originals
    sources: SourcesConfig
    sentences: SentenceConfig
    paragraphs: ParagraphConfig
    articles: ArticleConfig
    clean: CleanConfig
    alternatives: AlternativesConfig
    spinners: SpinnersConfig


NEWS_SOURCES = {"bbc", "ag_news", "msr", "mrpc", "paws"}  # row sources besides the clean domains


def load_config(path, overrides=None) -> DataConfig:
    cfg = cfglib.load(path, DataConfig, overrides)
    if set(cfg.splits) != {"train", "validation", "test"} or abs(sum(cfg.splits.values()) - 1) > 1e-6:
        raise cfglib.ConfigError(f"splits: need train, validation, test summing to 1, got {cfg.splits} [in {path}]")
    for name in FAMILIES:
        lo, hi = getattr(cfg.spinners, name).rate
        if not 0 <= lo <= hi <= 1:
            raise cfglib.ConfigError(f"spinners.{name}.rate: need 0 <= low <= high <= 1, got {[lo, hi]} [in {path}]")
    draws = {"sentences": cfg.sentences.families, "paragraphs": cfg.paragraphs.families,
             "articles": cfg.articles.families, "articles.partial": cfg.articles.partial_families,
             "clean": cfg.clean.families}
    for where, draw in draws.items():
        unknown = sorted((set(draw.weights) | set(draw.always)) - set(FAMILIES))
        if unknown:
            raise cfglib.ConfigError(f"{where}.families: unknown family {unknown[0]!r} "
                                     f"(known: {', '.join(FAMILIES)}) [in {path}]")
    taken = sorted(set(cfg.sources.clean) & NEWS_SOURCES)
    if taken:  # a row's `source` names its corpus: a domain must not pass for a news corpus
        raise cfglib.ConfigError(f"sources.clean.{taken[0]}: a news source's name [in {path}]")
    return cfg


def word_counts(texts) -> Counter:
    """Lower-case word frequencies: how common a word is in clean text."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(text[s:e].lower() for s, e in words(text) if is_word(text[s:e]))
    return counts


def draw_families(draw: FamilyDraw, key: str, seed: int, exclude=()) -> list[str]:
    """`draw.per_original` distinct families by weight (deterministic in `key`), then `draw.always`."""
    pool = {f: w for f, w in draw.weights.items() if w > 0 and f not in exclude}
    rng = random.Random(stable_int(seed, "families", key))
    chosen = []
    while pool and len(chosen) < draw.per_original:
        names = sorted(pool)
        pick = rng.choices(names, weights=[pool[n] for n in names])[0]
        chosen.append(pick)
        del pool[pick]
    return chosen + [f for f in draw.always if f not in chosen and f not in exclude]


def stable_int(*parts) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def split_documents(docs, seed: int, splits: dict[str, float]) -> dict[str, str]:
    """Each document's split: documents ordered by stable hash, cut by the fractions, with at least one in
    validation and one in test (the fiction is 8 books: a hash per document could leave a split without any)."""
    order = sorted(set(docs), key=lambda d: (stable_int(seed, "split", d), d))
    n = len(order)
    n_test = min(n, max(1, round(splits["test"] * n)))
    n_validation = min(n - n_test, max(1, round(splits["validation"] * n)))
    names = ["train"] * (n - n_test - n_validation) + ["validation"] * n_validation + ["test"] * n_test
    return dict(zip(order, names))


def assign_split(group: str, seed: int, splits: dict[str, float]) -> str:
    u = stable_int(seed, "split", group) / 2**64
    acc = 0.0
    for name in ("train", "validation", "test"):
        acc += splits[name]
        if u < acc:
            return name
    return "test"


class Groups:
    """Union-find over document ids: MRPC pairs tie two MSR sentences into one source group."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def n_words(text: str) -> int:
    return sum(1 for s, e in words(text) if is_word(text[s:e]))


def row(*, id, doc_id, source, level, kind, spinner, original, spun: Spun | None = None, label=0) -> dict:
    text = spun.text if spun else original
    edits = [e.as_dict() for e in spun.edits] if spun else []
    labels = word_labels(text, edits)
    word_flags = [lab for (s, e), lab in zip(words(text), labels) if is_word(text[s:e])]
    return {
        "id": id, "doc_id": doc_id, "source": source, "level": level, "kind": kind, "spinner": spinner,
        "text": text, "original": original, "label": label,
        "rate": round(spun.rate, 4) if spun else 0.0,
        "spun_share": round(sum(word_flags) / len(word_flags), 4) if word_flags else 0.0,
        "edits": edits, "word_labels": labels,
    }


@dataclass
class Job:
    """One spun variant to make: `family` spins `original` (within `regions` when given)."""

    split: str
    base: dict
    original: str
    family: str
    kind: str = "spun"
    regions: list | None = None
    min_edits: int = 1


def run_jobs(jobs: list[Job], spinners: dict, seed: int, quiet: bool = False,
             chunk_size: int = 64) -> list[tuple[str, dict]]:
    """(split, row) for every job with enough edits, in job order; each family spins its jobs in one batch."""
    by_family: dict[str, list[int]] = defaultdict(list)
    for k, j in enumerate(jobs):
        by_family[j.family].append(k)
    spun: list[Spun | None] = [None] * len(jobs)
    for family, ks in by_family.items():
        for chunk in tqdm([ks[i:i + chunk_size] for i in range(0, len(ks), chunk_size)], desc=f"spinning: {family}",
                          unit="chunk", disable=quiet):
            items = [(jobs[k].original, stable_int(seed, jobs[k].base["id"], family), jobs[k].regions) for k in chunk]
            for k, result in zip(chunk, spinners[family].spin_many(items)):
                spun[k] = result
    out = []
    for j, result in zip(jobs, spun):
        if len(result.edits) >= j.min_edits:
            rid = f"{j.base['id']}:{j.family}" + (":partial" if j.regions else "")
            out.append((j.split, row(**{**j.base, "id": rid}, kind=j.kind, spinner=j.family, original=j.original,
                                     spun=result, label=1)))
    return out


def read_sources(cfg: DataConfig, root: Path, skipped: Counter):
    """Originals by news corpus, (id, doc_id, text) paragraphs by clean domain, MRPC/PAWS pairs and the group of
    every news document id."""
    src, groups = cfg.sources, Groups()
    clean = lambda v, name: _clean(v, cfg.max_chars, skipped, name)
    bbc = [(r.get("id"), t) for r in read_jsonl(require(root, src.bbc, "sources.bbc"), skipped)
           if (t := clean(r.get("text"), "bbc")) and r.get("id")]
    ag = [(r.get("id"), t) for r in read_jsonl(require(root, src.ag_news, "sources.ag_news"), skipped)
          if (t := clean(r.get("text"), "ag_news")) and r.get("id")]
    msr = [(f"msr-{r['sentence_id']}", t) for r in read_tsv(require(root, src.msr, "sources.msr"), skipped)
           if (t := clean(r.get("text"), "msr"))]
    mrpc = []
    for i, rel in enumerate(src.mrpc):
        for r in read_tsv(require(root, rel, f"sources.mrpc[{i}]"), skipped):
            a, b = clean(r.get("sentence1"), "mrpc"), clean(r.get("sentence2"), "mrpc")
            if a and b:
                ida, idb = f"msr-{r['id1']}", f"msr-{r['id2']}"
                groups.union(ida, idb)
                mrpc.append({"id": f"mrpc-{r['id1']}-{r['id2']}", "group": ida, "a": a, "b": b,
                             "paraphrase": r.get("label") == "1"})
    paws = []
    for i, rel in enumerate(src.paws):
        path = require(root, rel, f"sources.paws[{i}]")
        for r in read_tsv(path, skipped):
            a, b = clean(r.get("sentence1"), "paws"), clean(r.get("sentence2"), "paws")
            if a and b:
                paws.append({"id": f"paws-{path.stem}-{r.get('id')}", "a": a, "b": b})
    clean_domains = {}
    for domain, rel in src.clean.items():
        rows = clean_domains[domain] = []
        for r in read_jsonl(require(root, rel, f"sources.clean.{domain}"), skipped):
            if not (isinstance(r.get("id"), str) and isinstance(r.get("doc"), str) and r["id"] and r["doc"]):
                skipped[f"{domain}:no_id"] += 1
            elif t := clean(r.get("text"), domain):
                rows.append((in_domain(domain, r["id"]), in_domain(domain, r["doc"]), t))
    return {"bbc": bbc, "ag_news": ag, "msr": msr}, clean_domains, mrpc, paws, groups


def in_domain(domain: str, name: str) -> str:
    """`name` under its domain's namespace, so that no clean id or document meets a news one (the files' doc
    names already carry it: "wikipedia:a001")."""
    return name if name.startswith(f"{domain}:") else f"{domain}:{name}"


def _clean(value, max_chars, skipped: Counter, name: str):
    text, reason = clean_text(value, max_chars)
    if reason:
        skipped[f"{name}:{reason}"] += 1
    return text


def bbc_sentences(bbc, cfg: SentenceConfig) -> list[tuple[str, str]]:
    out = []
    for doc_id, text in bbc:
        for k, (s, e) in enumerate(sentences(text)):
            if cfg.min_words <= n_words(text[s:e]) <= cfg.max_words:
                out.append((f"{doc_id}#s{k}", doc_id, text[s:e]))
    return out


def paragraphs(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for part in text.split("\n\n"):
        if part.strip():
            spans.append((pos, pos + len(part)))
        pos += len(part) + 2
    return spans


def paragraph_runs(text: str, min_words: int, max_words: int) -> list[tuple[int, int]]:
    """Runs of consecutive paragraphs of `min_words` to `max_words` words: paragraph-length texts."""
    out, run, n = [], [], 0
    for s, e in paragraphs(text):
        run, n = run + [(s, e)], n + n_words(text[s:e])
        if n >= min_words:
            if n <= max_words:
                out.append((run[0][0], run[-1][1]))
            run, n = [], 0
    return out


def draw_by_split(items: list[tuple[str, str, str]], split_of: dict[str, str], cap: int,
                  rng: random.Random) -> list[tuple[str, tuple[str, str, str]]]:
    """(split, item) for at most `cap` of the (id, doc_id, text) `items`, shuffled stably; each split takes its
    share of the draw, at least one item while it has any, so that a small draw still reaches validation and
    test."""
    by_split: dict[str, list] = defaultdict(list)
    for item in sorted(items):
        by_split[split_of[item[1]]].append(item)
    out, left = [], cap
    for split in ("test", "validation", "train"):
        mine = by_split[split]
        rng.shuffle(mine)
        want = left if split == "train" else max(1, round(cap * len(mine) / len(items))) if mine else 0
        take = min(want, left, len(mine))
        out += [(split, item) for item in mine[:take]]
        left -= take
    return out


def build_rows(cfg: DataConfig, root: Path,
               quiet: bool = False) -> tuple[dict[str, list[dict]], Counter, dict, set[str]]:
    """Rows by split, skipped rows by reason, each family's swap table (for suggestions and signals), and the
    vocabulary the tables cover."""
    skipped: Counter = Counter()
    corpora, clean_domains, mrpc, paws, groups = read_sources(cfg, root, skipped)
    rng = random.Random(cfg.seed)
    split_of = lambda doc_id: assign_split(groups.find(doc_id), cfg.seed, cfg.splits)
    out: dict[str, list[dict]] = defaultdict(list)
    jobs: list[Job] = []

    def original(base: dict, text: str, draw: FamilyDraw, min_edits: int = 1, split: str | None = None) -> str:
        split = split or split_of(base["doc_id"])
        out[split].append(row(**base, kind="original", spinner="none", original=text))
        jobs.extend(Job(split, base, text, f, min_edits=min_edits) for f in draw_families(draw, base["id"], cfg.seed))
        return split

    # Sentence level: originals (clean), their spun versions, a few verbatim copies.
    sc = cfg.sentences
    candidates = {
        "bbc": bbc_sentences(corpora["bbc"], sc),
        "ag_news": [(d, d, t) for d, t in corpora["ag_news"] if sc.min_words <= n_words(t) <= sc.max_words * 2],
        "msr": [(d, d, t) for d, t in corpora["msr"] if sc.min_words <= n_words(t) <= sc.max_words],
    }
    for source, items in candidates.items():
        if source not in sc.originals:
            continue
        items = sorted(items)
        rng.shuffle(items)
        for rid, doc_id, text in items[: sc.originals[source]]:
            base = {"id": rid, "doc_id": doc_id, "source": source, "level": "sentence"}
            split = original(base, text, sc.families)
            if stable_int(cfg.seed, "verbatim", rid) / 2**64 < sc.verbatim_share:
                out[split].append(row(**{**base, "id": rid + ":verbatim"}, kind="verbatim", spinner="none",
                                      original=text))

    # Human rewording is not spinning: MRPC paraphrases from other outlets, PAWS word-swaps.
    for p in [p for p in mrpc if p["paraphrase"]][: sc.mrpc_max]:
        out[split_of(p["group"])].append(row(id=p["id"], doc_id=groups.find(p["group"]), source="mrpc",
                                             level="sentence", kind="paraphrase", spinner="human",
                                             original=p["a"], spun=Spun(p["b"], [], 0.0)))
    for p in paws[: sc.paws_max]:
        out[split_of(p["id"])].append(row(id=p["id"], doc_id=p["id"], source="paws", level="sentence",
                                          kind="paraphrase", spinner="human", original=p["a"],
                                          spun=Spun(p["b"], [], 0.0)))

    # Paragraph level: runs of BBC paragraphs of 50-150 words, clean and spun.
    pc = cfg.paragraphs
    runs = sorted((f"{doc_id}#p{k}", doc_id, text[s:e]) for doc_id, text in corpora["bbc"]
                  for k, (s, e) in enumerate(paragraph_runs(text, pc.min_words, pc.max_words)))
    rng.shuffle(runs)
    for rid, doc_id, text in runs[: pc.originals]:
        original({"id": rid, "doc_id": doc_id, "source": "bbc", "level": "paragraph"}, text, pc.families)

    # Article level: each BBC article clean, fully spun, and with some paragraphs spun.
    ac = cfg.articles
    for doc_id, text in corpora["bbc"][: ac.max_articles]:
        if split_of(doc_id) not in ac.splits:
            continue
        base = {"id": doc_id, "doc_id": doc_id, "source": "bbc", "level": "article"}
        split = original(base, text, ac.families, ac.min_edits)
        paras = paragraphs(text)
        prng = random.Random(stable_int(cfg.seed, "partial", doc_id))
        k = max(1, round(prng.uniform(*ac.partial_share) * len(paras)))
        regions = sorted(prng.sample(paras, min(k, len(paras))))
        jobs.extend(Job(split, base, text, f, "partial", regions, ac.min_edits)
                    for f in draw_families(ac.partial_families, doc_id + ":partial", cfg.seed))

    # Paragraphs of the clean domains, clean and spun. Each domain is split by its own documents, so that every
    # domain reaches validation and test (per-domain false positives are calibrated and measured there).
    cc = cfg.clean
    for domain, items in clean_domains.items():
        split_of_doc = split_documents([doc_id for _, doc_id, _ in items], cfg.seed, cfg.splits)
        drawn = draw_by_split(items, split_of_doc, cc.originals_per_domain,
                              random.Random(stable_int(cfg.seed, "clean", domain)))
        for split, (rid, doc_id, text) in drawn:
            original({"id": rid, "doc_id": doc_id, "source": domain, "level": "paragraph"}, text, cc.families,
                     split=split)

    # Every clean text read counts, so that the tables' vocabulary reaches encyclopedic and scientific words.
    counts = word_counts([t for texts in corpora.values() for _, t in texts]
                         + [t for items in clean_domains.values() for _, _, t in items])
    resources = Resources(require(root, cfg.sources.lexicon, "sources.lexicon"), counts)
    spinners = make_spinners(cfg.spinners, resources)
    for split, r in run_jobs(jobs, spinners, cfg.seed, quiet):
        out[split].append(r)
    vocabulary = {w for w, n in counts.items() if n >= cfg.tables_min_count}
    return out, skipped, {name: sp.table(vocabulary) for name, sp in spinners.items()}, vocabulary


def general_alternatives(cfg: DataConfig, vocabulary: set[str]) -> dict[str, dict[str, list[str]]]:
    """Broad alternatives for each `vocabulary` word, from the resources behind the moby and wordnet families:
    the language-model signal asks whether one of them would have been far likelier, and the swap tables
    (Moby's top 5, WordNet's top 3 of two senses) are too narrow for that."""
    ac = cfg.alternatives
    wn = load_wordnet(cfg.spinners.wordnet.path)
    return {"moby": Thesaurus(load_moby(), keep=ac.moby_keep).table(vocabulary),
            "wordnet": {w: alts for w in sorted(vocabulary) if (alts := wordnet_lemmas(wn, w, ac.wordnet_senses))}}


def card(cfg: DataConfig, root: Path, splits: dict[str, list[dict]], skipped: Counter, seconds: float) -> dict:
    counts = {}
    for split, rows in splits.items():
        c = Counter()
        for r in rows:
            band = "0" if r["spun_share"] == 0 else "<20%" if r["spun_share"] < 0.2 else "20-40%" if r["spun_share"] < 0.4 else ">=40%"
            c[f"level={r['level']}"] += 1
            c[f"{r['level']}/label={r['label']}"] += 1
            c[f"{r['level']}/spinner={r['spinner']}"] += 1
            c[f"{r['level']}/kind={r['kind']}"] += 1
            c[f"{r['level']}/source={r['source']}"] += 1
            c[f"{r['level']}/spun_share={band}"] += 1
        counts[split] = {"rows": len(rows), "documents": len({r["doc_id"] for r in rows}), **dict(sorted(c.items()))}
    src = cfg.sources
    files = [src.bbc, src.ag_news, src.msr, *src.mrpc, *src.paws, src.lexicon, *src.clean.values()]
    return {
        "config": recipe(cfg),
        "data_root": str(root.resolve()),
        "sources": {f: {"sha256": sha256(root / f), "bytes": (root / f).stat().st_size} for f in files},
        "counts": counts,
        "skipped": dict(sorted(skipped.items())),
        "build_seconds": round(seconds, 1),
    }


def card_markdown(c: dict) -> str:
    lines = ["# unspin aligned-pair dataset", "", "Built by `python -m data.build`; split by source document.", "",
             "| split | rows | documents |", "|---|---|---|"]
    lines += [f"| {s} | {v['rows']} | {v['documents']} |" for s, v in c["counts"].items()]
    for split, v in c["counts"].items():
        lines += ["", f"## {split}", ""] + [f"- {k}: {n}" for k, n in v.items() if k not in ("rows", "documents")]
    lines += ["", "## Skipped rows", ""] + ([f"- {k}: {n}" for k, n in c["skipped"].items()] or ["- none"])
    lines += ["", "## Sources", ""] + [f"- {f}: sha256 {v['sha256']}" for f, v in c["sources"].items()]
    lines += ["", f"Build time: {c['build_seconds']} s", ""]
    return "\n".join(lines)


def features():
    from datasets import Features, List, Value

    edit = {k: Value("int32") for k in ("src_start", "src_end", "dst_start", "dst_end")}
    edit.update(src=Value("string"), dst=Value("string"))
    strings = ("id", "doc_id", "source", "level", "kind", "spinner", "text", "original")
    return Features({**{k: Value("string") for k in strings}, "label": Value("int8"),
                     "rate": Value("float32"), "spun_share": Value("float32"),
                     "edits": List(edit), "word_labels": List(Value("int8"))})


def build(cfg: DataConfig, quiet: bool = False) -> dict:
    """Build the dataset described by `cfg`; returns its card."""
    import datasets
    from datasets import Dataset, DatasetDict

    datasets.disable_progress_bars()
    t0 = time.time()
    root = cfglib.data_root(cfg.data_root)
    if not root.is_dir():
        raise MissingCorpus(f"data_root not found: {root} (set data_root in the config or UNSPIN_DATA_ROOT)")
    splits, skipped, tables, vocabulary = build_rows(cfg, root, quiet)
    alternatives = general_alternatives(cfg, vocabulary)
    out = Path(cfg.output_dir)
    dd = DatasetDict({s: Dataset.from_list(splits.get(s, []), features=features()) for s in ("train", "validation", "test")})
    dd.save_to_disk(str(out))
    for name, content in ((TABLES, tables), (ALTERNATIVES, alternatives)):
        with gzip.open(out / name, "wt", encoding="utf-8") as f:
            json.dump(content, f)
    c = card(cfg, root, splits, skipped, time.time() - t0)
    c["tables"] = {name: len(t) for name, t in tables.items()}
    c["alternatives"] = {name: len(t) for name, t in alternatives.items()}
    (out / "card.json").write_text(json.dumps(c, indent=2))
    (out / "README.md").write_text(card_markdown(c))
    return c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.config_args(ap, "configs/data.yaml")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        c = build(cfg, args.quiet)
    except (cfglib.ConfigError, MissingCorpus) as e:
        return cli.fail(e)
    for split, v in c["counts"].items():
        print(f"{split:>10}: {v['rows']:6d} rows, {v['documents']:5d} documents, "
              f"sentence spun/clean {v.get('sentence/label=1', 0)}/{v.get('sentence/label=0', 0)}, "
              f"paragraph spun/clean {v.get('paragraph/label=1', 0)}/{v.get('paragraph/label=0', 0)}, "
              f"article spun/clean {v.get('article/label=1', 0)}/{v.get('article/label=0', 0)}")
    print(f"skipped rows: {sum(c['skipped'].values())} {c['skipped'] or ''}")
    print(f"wrote {cfg.output_dir} in {c['build_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
