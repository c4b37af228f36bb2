"""Context-stage benchmark: for each language-model precision, its cost per article read and how far its word
features are from full precision's, on BBC-sized test articles. Prints figures; asserts nothing about time.

    python bench/bench_lm.py [--articles 40]

Which precision is fastest depends on the CPU (bfloat16 is native with AVX512-BF16 or AMX, emulated without).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_score import bench_articles

from data import cli


def features(det, texts: list[str], precision: str) -> tuple[np.ndarray, float]:
    """The language model's prices of every article's words (thorough mode reads them all), and seconds per article."""
    det.reader.precision = precision
    det.reader.lm  # noqa: B018 - loaded before the clock starts
    analyses = det.analyse(texts)
    det.stage_one(analyses)  # past the word budget, stage one picks the sentences read
    t0 = time.perf_counter()
    det.read(analyses)
    seconds = (time.perf_counter() - t0) / len(texts)
    return np.concatenate([s.prices for a in analyses for s in a.sentences if s.prices is not None]), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=40)
    args = ap.parse_args()
    cli.offline()
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + str(ROOT / "mlflow.db"))
    from data.lm import PRECISIONS
    from inference import Detector, settings

    det = Detector.load(settings.load().model)
    if det.reader is None:
        print("the model does not read: it has no language model")
        return 1
    texts = bench_articles(args.articles)
    shipped = det.reader.precision
    print(f"language model, {len(texts)} BBC-sized test articles (every sentence read, at most "
          f"{det.reading_.max_words} words), {os.cpu_count()} CPU cores; the model ships {shipped}")
    print(f"{'precision':10s} {'ms/article':>10s} {'|d ratio|':>10s} {'|d surprisal|':>13s} {'corr ratio':>10s}")
    reference, _ = features(det, texts, "float32")
    for precision in PRECISIONS:
        got, seconds = features(det, texts, precision)
        gap = np.abs(got - reference)[:, :2].mean(0)
        corr = np.corrcoef(got[:, 0], reference[:, 0])[0, 1]
        print(f"{precision:10s} {1000 * seconds:10.1f} {gap[0]:10.3f} {gap[1]:13.3f} {corr:10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
