"""Which zero-shot text score ranks each held-out spinner family best? (#24: fit for the worst family.)

For every family f, SmolLM2 reads validation paragraphs: f's spun ones and a fixed sample of clean ones (every
source and domain), with the alternatives a model trained without f would have (the other families' reversed
tables and thesauri, train/suggestions.py). Candidate text scores are computed from the same reading, so they
cost nothing more than today's one:
- `ratio`: the mean over words with alternatives of clip(log P(best alternative) - log P(word), 0, 12): the
  detector's zero-shot score without the next word (`zero_shot(sents, 0)`, inference/model/detector.py);
- `surprisal`: the mean surprisal of the words;
- `next+g`: the shipped zero-shot score with next-word weight g (`zero_shot(sents, g)`: the log-ratio, at least 0,
  plus g x the next word's excess surprisal, then clipped; a swap also makes the next word unlikely);
- `rare+l`: the ratio plus l x how much rarer (Zipf, wordfreq) the word is than its best alternative.
Prints one paragraph ROC-AUC per family and score, and the worst family per score; logs them to MLflow
(experiment `unspin-probes`). Usage: python bench/probe_zero_shot.py [--texts 120] [--clean 200]
"""
from __future__ import annotations

import argparse
import random

import numpy as np
from sklearn.metrics import roc_auc_score


def paragraphs(rows, n, seed, keep):
    """A fixed sample of `n` paragraph rows that `keep` accepts."""
    picked = [r for r in rows if r["level"] == "paragraph" and keep(r)]
    random.Random(seed).shuffle(picked)
    return picked[:n]


def read(texts, signal):
    """Per text: rows of (ratio, surprisal, known, zipf(word), zipf(best alternative)) per word, in order, and
    the priced sentences."""
    from wordfreq import zipf_frequency

    from data.text import sentences, words
    from inference.model.detector import Analysis, Sentence

    analyses = []
    for t in texts:
        sents = [Sentence(s, e) for s, e in sentences(t)]
        for s in sents:
            s.words = [(s.start + a, s.start + b) for a, b in words(t[s.start:s.end])]
        analyses.append(Analysis(t, sents))
    signal.price([(a, a.sentences) for a in analyses])
    out = []
    for a in analyses:
        rows = []
        for s in a.sentences:
            for i, (ws, we) in enumerate(s.words):
                best = (s.preferred or {}).get(i)
                word = a.text[ws:we]
                rows.append([*s.prices[i], zipf_frequency(word, "en"),
                             zipf_frequency(best, "en") if best else np.nan])
        out.append((np.array(rows).reshape(-1, 5), a.sentences))
    return out


def scores(words: np.ndarray, sents) -> dict[str, float]:
    from inference.model.detector import zero_shot
    from inference.model.signals import CLIP

    ratio, surprisal, known, zw, za = words.T
    if not len(words) or not known.any():
        return {}
    k = known > 0
    r = np.clip(ratio, 0.0, CLIP)
    rare = np.clip(np.nan_to_num(za - zw), 0.0, 3.0)
    out = {"ratio": zero_shot(sents, 0.0), "surprisal": surprisal.mean()}
    for g in (0.1, 0.25, 0.5):
        out[f"next+{g}"] = zero_shot(sents, g)
    for lam in (0.25, 0.5, 1.0):
        out[f"rare+{lam}"] = (r + lam * rare)[k].mean()
    out["rare"] = rare[k].mean()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="artifacts/dataset")
    ap.add_argument("--texts", type=int, default=120, help="spun validation paragraphs per family")
    ap.add_argument("--clean", type=int, default=200, help="clean validation paragraphs (the same for every family)")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)

    import mlflow
    from datasets import load_from_disk

    from data.build import load_alternatives, load_tables
    from inference.model.signals import Reader
    from train.config import load as load_config
    from train.suggestions import build_suggester

    cfg = load_config("configs/train.yaml")
    dataset = load_from_disk(args.dataset)
    val = list(dataset["validation"])
    train_originals = sorted({r["original"] for r in dataset["train"] if r["spinner"] != "human"})
    tables = {"swaps": load_tables(args.dataset), "alternatives": load_alternatives(args.dataset)}
    families = list(cfg.lofo.families)
    clean = paragraphs(val, args.clean, args.seed, lambda r: r["label"] == 0 and r["kind"] == "original")
    table: dict[str, dict[str, float]] = {}
    for f in families:
        spun = paragraphs(val, args.texts, args.seed, lambda r, f=f: r["spinner"] == f and r["label"] == 1)
        s = cfg.suggestions
        sugg = build_suggester(tables["swaps"], [x for x in tables["swaps"] if x != f], train_originals,
                               s.min_bigram, s.neighbour_weight, tables["alternatives"])
        signal = Reader(sugg.candidates, cfg.reading.max_alternatives, cfg.reading.precision)
        got = [scores(*x) for x in read([r["text"] for r in clean + spun], signal)]
        y = np.r_[np.zeros(len(clean)), np.ones(len(spun))]
        names = sorted({n for g in got for n in g})
        table[f] = {n: roc_auc_score(y, [g.get(n, 0.0) for g in got]) for n in names}
        print(f, len(spun), "spun,", len(clean), "clean:",
              " ".join(f"{n}={v:.3f}" for n, v in table[f].items()), flush=True)
    names = sorted({n for t in table.values() for n in t})
    print(f"\n{'score':12s} " + " ".join(f"{f:>9s}" for f in families) + "    worst")
    for n in names:
        vals = [table[f].get(n, float("nan")) for f in families]
        print(f"{n:12s} " + " ".join(f"{v:9.3f}" for v in vals) + f"    {min(vals):.3f}")
    mlflow.set_experiment("unspin-probes")
    with mlflow.start_run(run_name="zero-shot-scores"):
        mlflow.log_params(vars(args))
        mlflow.log_metrics({f"{n.replace('+', '_plus_')}.{f}": v for f, t in table.items() for n, v in t.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
