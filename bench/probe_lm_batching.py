"""How the language model's calls are cut matters for speed: one call per document (its sentences padded to the
longest) against `CausalLM._batches` (a document's sentences of similar length together). Scores the same
BBC-sized test articles with the champion in thorough mode, alternating the two twice in one process, and prints
articles/s and the largest score difference. Prints figures, asserts nothing.

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python bench/probe_lm_batching.py [--articles 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_score import bench_articles
from data import cli


def main() -> None:
    import numpy as np

    from data.lm import CausalLM
    from inference import Detector

    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=8)
    args = ap.parse_args()
    cli.offline()
    texts = bench_articles(args.articles)
    Detector.load("models:/unspin@champion").score(texts[:2])  # loads and warms the language model
    similar, scores = CausalLM._batches, {}
    per_document = lambda groups, lengths: similar(groups, lengths, waste=float("inf"))  # the cut before: no split
    for name, cut in [("per document", per_document), ("similar lengths", similar)] * 2:
        CausalLM._batches = staticmethod(cut)
        det = Detector.load("models:/unspin@champion", mode="thorough")
        t = time.time()
        records = det.score(texts)
        print(f"{name}: {len(texts) / (time.time() - t):.3f} articles/s", flush=True)
        scores[name] = np.array([r["score"] for r in records])
    print("largest score difference:", float(np.abs(scores["per document"] - scores["similar lengths"]).max()))


if __name__ == "__main__":
    main()
