"""How many clean validation texts does a length band's decision point need? (#25: at most 1% of every domain's
clean test texts flagged.)

The shipped model's thorough raw scores of every clean validation and test text of the chosen levels (the sentence
level by default: cheap to read). For each rule, the band's decision point is placed on validation as training
places it (`train/calibrate.py:decision_point`: the worst domain flagged at `rate`), and the test split's clean
texts flagged per domain, and its spun texts' recall, are printed and logged to MLflow (experiment
`unspin-probes`). Rules: the model's own decision point (`shipped`), `threshold_texts` validation texts a domain
(a sample like training's) or all of them, at `max_clean_fp_rate` and at half of it.
Usage: python bench/probe_clean_bound.py [--model models:/unspin@champion] [--levels sentence]
"""
from __future__ import annotations

import argparse

import numpy as np


def raw_scores(det, rows, desc):
    """Thorough mode's raw score (before the band curve) and length band of each row's text."""
    from train.calibrate import read_all

    analyses = det.analyse([r["text"] for r in rows])
    read_all(det, analyses, desc)
    mode = det.modes_["thorough"]
    X, _ = det.features(analyses, reads=True)
    return mode.raw(X), np.array([det.length_band(a) for a in analyses])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models:/unspin@champion")
    ap.add_argument("--dataset", default="artifacts/dataset")
    ap.add_argument("--levels", nargs="+", default=["sentence"])
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)

    import mlflow
    from datasets import load_from_disk

    from inference.model.detector import Detector
    from train.calibrate import decision_point, is_clean, per_source
    from train.config import load as load_config

    cal = load_config("configs/train.yaml").calibration
    det = Detector.load(args.model, mode="thorough")
    dataset = load_from_disk(args.dataset)
    val = [r for r in dataset["validation"] if r["level"] in args.levels and is_clean(r)]
    test = [r for r in dataset["test"] if r["level"] in args.levels]
    val_raw, val_band = raw_scores(det, val, "language model: clean validation texts")
    test_raw, test_band = raw_scores(det, test, "language model: test texts")
    val_src, test_src = np.array([r["source"] for r in val]), np.array([r["source"] for r in test])
    test_clean = np.array([is_clean(r) for r in test])
    test_spun = np.array([r["label"] == 1 for r in test])
    sampled = {r["id"] for r in per_source(val, cal.threshold_texts, args.seed)}
    in_sample = np.array([r["id"] in sampled for r in val])
    rules = {f"{cal.threshold_texts}_a_domain": (in_sample, cal.max_clean_fp_rate),
             "all": (np.ones(len(val), bool), cal.max_clean_fp_rate),
             "all_half_rate": (np.ones(len(val), bool), cal.max_clean_fp_rate / 2)}
    metrics = {}
    for band in sorted(set(val_band)):
        for name, (keep, rate) in {"shipped": (None, None), **rules}.items():
            mine = (val_band == band) & (keep if keep is not None else True)
            slices = {d: mine & (val_src == d) for d in sorted(set(val_src[mine]))}
            at, by = ((det.modes_["thorough"].bands[band].at, "training") if keep is None else
                      decision_point(val_raw, slices, rate, cal.min_slice_texts))
            flagged = test_raw >= at
            t = test_band == band
            fpr = {d: (flagged[t & test_clean & (test_src == d)].mean(), (t & test_clean & (test_src == d)).sum())
                   for d in sorted(set(test_src[t & test_clean]))}
            recall = flagged[t & test_spun].mean() if (t & test_spun).any() else float("nan")
            n_val = {d: int(m.sum()) for d, m in slices.items()}
            print(f"{band} {name}: at {at:.3f} (set by {by}; validation texts {n_val}); test recall {recall:.3f}; "
                  "clean flagged " + ", ".join(f"{d} {v:.3f} of {n}" for d, (v, n) in fpr.items()), flush=True)
            metrics[f"{band}.{name}.at"], metrics[f"{band}.{name}.recall"] = at, recall
            metrics.update({f"{band}.{name}.clean_fpr.{d}": v for d, (v, _) in fpr.items()})
    mlflow.set_experiment("unspin-probes")
    with mlflow.start_run(run_name="clean-bound"):
        mlflow.log_params(vars(args))
        mlflow.log_metrics(metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
