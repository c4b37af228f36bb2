"""`python -m train --config configs/train.yaml`: data -> models -> evaluation -> MLflow -> registry.

One parent MLflow run per call, one nested run per model. `train(cfg)` returns the figures it logged.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from data import build as data_build
from data import cli
from data.configfile import ConfigError
from data.corpora import MissingCorpus
from inference.model.detector import LENGTH_BANDS
from inference.settings import MLFLOW_STORE
from train import config as train_config
from train.config import TargetsSection, TrainConfig


def ensure_dataset(cfg: TrainConfig):
    """Load the dataset the data config describes, building it first when missing or built otherwise."""
    from datasets import load_from_disk

    data_cfg = data_build.load_config(cfg.data.config, cfg.data.overrides)
    out = Path(data_cfg.output_dir)
    card = json.loads((out / "card.json").read_text()) if (out / "card.json").exists() else None
    if cfg.data.rebuild or card is None or card["config"] != data_build.recipe(data_cfg):
        print(f"building dataset -> {out}", flush=True)
        card = data_build.build(data_cfg)
    return load_from_disk(str(out)), card, data_cfg


def dataset_hash(card: dict) -> str:
    key = json.dumps({"sources": card["sources"], "config": card["config"], "counts": card["counts"]}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def model_card(name: str, kind: str, det, val: dict, test: dict, table_text: str, card: dict,
               cfg: TrainConfig) -> str:
    bullets = lambda m: "\n".join(f"- {k}: {v:.4f}" for k, v in sorted(m.items()))
    bound = kind in cfg.calibration.paraphrase_bound
    return string.Template((Path(__file__).parent / "templates/model_card.md").read_text()).substitute(
        name=name, kind=kind, mode=det.mode, threshold=f"{det.threshold:.3f}",
        max_clean=f"{cfg.calibration.max_clean_fp_rate:.1%}",
        paraphrase_rule=f" and at most {cfg.calibration.max_paraphrase_fp_rate:.0%} of validation paraphrases"
                        if bound else "",
        dataset_hash=dataset_hash(card), rows=", ".join(f"{s} {v['rows']}" for s, v in card["counts"].items()),
        families=", ".join(det.facts.get("families", [])), validation=bullets(val), test=bullets(test),
        table=table_text)


def tables_for(cfg: TrainConfig, tables: dict, families: list[str], originals: list[str]) -> dict:
    """A tagger's suggester (which also gives the language model its alternatives) and known phrases, from the
    families it may know, as Detector arguments. `tables`: {"swaps": the families' swap tables, "alternatives":
    their resources' thesauri}."""
    from inference.model.detector import KnownPhrases
    from train.suggestions import LEXICON, build_suggester, known_phrases

    out = {}
    if cfg.suggestions.enabled:
        s = cfg.suggestions
        out["suggester"] = build_suggester(tables["swaps"], families, originals, s.min_bigram, s.neighbour_weight,
                                           tables["alternatives"])
    if cfg.lexicon_signal.enabled and LEXICON in families:
        ls = cfg.lexicon_signal
        out["lexicon"] = KnownPhrases(known_phrases(tables["swaps"], originals, ls.min_words, ls.max_clean_hits),
                                      ls.score)
    return out


@dataclasses.dataclass(frozen=True)
class Job:
    """One model of a training call; `train` fits them in the order `jobs_for` lists them."""

    name: str  # the nested MLflow run's name and the key of train()'s "models"
    kind: str  # "baseline" or "tagger"
    exclude: str | None = None  # a leave-one-family-out fold: the family held out of all it learns from
    register: str | None = None  # registered model name (main models; folds are never registered)
    max_train_rows: int | None = None  # tagger: training rows sampled (folds train on fewer)
    max_steps: int | None = None  # tagger: stop after this many steps (folds)


def jobs_for(cfg: TrainConfig) -> list[Job]:
    jobs = []
    if cfg.baseline.enabled:
        jobs.append(Job("baseline", "baseline", register=cfg.registry.baseline_name))
    if cfg.tagger.enabled:
        if cfg.tagger.main:
            jobs.append(Job("tagger", "tagger", register=cfg.registry.name, max_train_rows=cfg.tagger.max_train_rows))
        if cfg.lofo.enabled:
            jobs += [Job(f"tagger-without-{f}", "tagger", exclude=f, max_train_rows=cfg.lofo.max_train_rows,
                         max_steps=cfg.lofo.max_steps) for f in cfg.lofo.families]
    return jobs


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a model may learn from: every row and dictionary but the held-out family's (all of them for a
    main model). Built once per job, so fitting never asks again what is excluded."""

    train: list[dict]  # sentence and paragraph rows
    validation: list[dict]  # calibration rows
    families: list[str]  # dictionaries it may use (suggestions, lexicon); logged as the detector's families
    originals: list[str]  # clean training texts: the suggester ranks with them, the lexicon drops what they use

    @classmethod
    def without(cls, exclude: str | None, splits: dict, tables: dict) -> Selection:
        def keep(rows):
            return [r for r in rows if r["spinner"] != exclude]

        return cls(train=keep([r for r in splits["train"] if r["level"] in ("sentence", "paragraph")]),
                   validation=keep(splits["validation"]),
                   families=[f for f in tables["swaps"] if f != exclude],
                   originals=sorted({r["original"] for r in splits["train"] if r["spinner"] != "human"}))


SECTIONS = {"baseline": ["baseline", "calibration"],
            "tagger": ["tagger", "random_swaps", "calibration", "reading", "suggestions", "lexicon_signal"]}


def hyperparameters(cfg: TrainConfig, job: Job) -> dict[str, str]:
    """The config sections a model was made with, flattened ("tagger.lr"): params the MLflow UI compares."""
    def flat(prefix: str, value) -> dict:
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in flat(f"{prefix}.{key}", sub).items()}
        return {prefix: str(value)}

    raw = dataclasses.asdict(cfg)
    names = SECTIONS[job.kind] + (["lofo"] if job.exclude else [])
    return {"seed": str(cfg.seed), **{k: v for name in names for k, v in flat(name, raw[name]).items()}}


def fit_baseline_job(job: Job, cfg: TrainConfig, chosen: Selection, tables: dict):
    from train.baseline import fit_baseline

    rows = chosen.train
    return fit_baseline(cfg.baseline, [r["text"] for r in rows], [r["label"] for r in rows], cfg.seed), rows


def fit_tagger_job(job: Job, cfg: TrainConfig, chosen: Selection, tables: dict):
    import mlflow

    from inference.model.detector import Detector
    from train.augment import add_random_swaps
    from train.tagger import fit_tagger

    rng = random.Random(cfg.seed)
    rows = chosen.train
    if job.max_train_rows and len(rows) > job.max_train_rows:
        rows = rng.sample(rows, job.max_train_rows)
    rows = add_random_swaps(rows, chosen.originals, cfg.random_swaps, rng)
    short_val = [r for r in chosen.validation if r["level"] != "article"]
    tagger = fit_tagger(cfg.tagger, rows, rng.sample(short_val, min(len(short_val), cfg.tagger.eval_rows)),
                        cfg.seed, log=lambda k, v, s: mlflow.log_metric(k, v, step=s), max_steps=job.max_steps)
    return Detector("tagger", tagger=tagger, **tables_for(cfg, tables, chosen.families, chosen.originals)), rows


FIT = {"baseline": fit_baseline_job, "tagger": fit_tagger_job}  # kind -> (detector, the rows it trained on)


def fit_one(job: Job, cfg: TrainConfig, splits: dict, card: dict, tables: dict) -> dict:
    """Fit, calibrate, evaluate and log one model in the active (nested) run: a fold is judged on its
    held-out family, a main model on the test split (and registered)."""
    import mlflow

    from train.calibrate import fit_calibration

    chosen = Selection.without(job.exclude, splits, tables)
    t0 = time.time()
    det, train_rows = FIT[job.kind](job, cfg, chosen, tables)
    fit_seconds = time.time() - t0
    det.describe(train_rows=len(train_rows), families=chosen.families)
    # The language model's reading is fitted for taggers only: fit_calibration skips it for a detector without one.
    val = fit_calibration(det, chosen.validation, cfg.calibration, cfg.seed, cfg.reading)
    mlflow.log_params({"kind": job.kind, "excluded_family": job.exclude or "none", "train_rows": len(train_rows),
                       "dataset_hash": dataset_hash(card), **hyperparameters(cfg, job)})
    out = {"kind": job.kind, "exclude": job.exclude, "val": val, "version": None, "promoted": False, "message": "",
           "fit_seconds": fit_seconds, "run_id": mlflow.active_run().info.run_id}
    if job.exclude:
        return {**out, **judge_fold(det, job.exclude, val, fit_seconds, splits["test"], cfg)}
    return {**out, **judge_main(job, det, val, fit_seconds, splits["test"], chosen, card, cfg)}


def judge_fold(det, family: str, val: dict, fit_seconds: float, test: list[dict], cfg: TrainConfig) -> dict:
    """A held-out fold is judged on its family only, which also keeps it quick."""
    import mlflow

    from train.evaluate import evaluate_families

    figures = evaluate_families(det, test, [family], cfg.lofo.max_eval_texts, cfg.seed, cfg.lofo.tagger_weights)
    variants = {variant: f.get(family, {}) for variant, f in figures.items()}
    mlflow.log_metrics({**val, "fit_seconds": fit_seconds, **{f"heldout.{k}": v for k, v in variants["full"].items()},
                        **{f"heldout_{variant}.{k}": v for variant, f in variants.items() if variant != "full"
                           for k, v in f.items()}})
    return {"heldout": variants["full"], "heldout_variants": {k: v for k, v in variants.items() if k != "full"}}


def judge_main(job: Job, det, val: dict, fit_seconds: float, test: list[dict], chosen: Selection, card: dict,
               cfg: TrainConfig) -> dict:
    """A main model on the test split and on each family it knows; logs tables, plots and worst examples,
    and registers it (champion if better) when the job names a registered model."""
    import mlflow

    from inference.report import examples_report
    from train.calibrate import Analyses, clean_fpr, is_clean, per_level, per_source, read_all
    from train.evaluate import evaluate, evaluate_families, format_table, plots, worst_examples

    test_rows = per_level(test, cfg.max_test_texts, cfg.seed)
    analyse = Analyses(det)  # the three samples below share texts: each is read once
    t1 = time.time()
    result = evaluate(det, test_rows, analyse=analyse)
    eval_seconds = time.time() - t1
    test_chars = sum(len(r["text"]) for r in test_rows)
    clean = per_source([r for r in test if is_clean(r)], cfg.max_test_texts, cfg.seed)
    analyses = analyse([r["text"] for r in clean])
    if det.modes_[det.mode].reads:
        read_all(det, analyses, "language model: clean test texts")
    scores, bands = np.array(det.text_scores(analyses)), [det.length_band(a) for a in analyses]
    fpr = clean_fpr(scores, clean, bands, det.threshold, "test")
    # the clean texts a moderator would have been sent: which they are says why
    mlflow.log_dict([{"id": r["id"], "source": r["source"], "band": b, "score": round(float(s), 4), "text": r["text"][:600]}
                     for r, b, s in zip(clean, bands, scores) if s >= det.threshold], "evaluation/clean_flagged.json")
    spans = [len(det.spans(a)) for a, r in zip(analyses, clean) if r["level"] == "article"]
    fpr["test_clean_article_spans"] = float(np.mean(spans)) if spans else float("nan")
    result["metrics"].update(fpr)
    figures = evaluate_families(det, test, chosen.families, cfg.lofo.max_eval_texts, cfg.seed, analyse=analyse)
    families, families_tagger_only = figures["full"], figures.get("tagger_only", {})
    mlflow.log_metrics({**val, **result["metrics"], "fit_seconds": fit_seconds, "eval_seconds": eval_seconds,
                        "eval_chars_per_second": test_chars / max(1e-9, eval_seconds),
                        **{f"family.{f}.{k}": v for f, m in families.items() for k, v in m.items()},
                        **{f"family_tagger_only.{f}.{k}": v for f, m in families_tagger_only.items()
                           for k, v in m.items()}})
    table_text = (format_table(f"{job.kind}: test split, {det.mode} mode (threshold {det.threshold:.3f})",
                               result["table"]) + "\n\n" + fpr_table(fpr))
    mlflow.log_text(table_text, "evaluation/test_table.txt")
    mlflow.log_dict(result["table"], "evaluation/test_table.json")
    worst = worst_examples(result, det.threshold, cfg.worst_examples)
    if worst:
        mlflow.log_table({k: [e[k] for e in worst] for k in worst[0]}, "evaluation/worst_examples.json")
        mlflow.log_text(examples_report(det, worst, test_rows), "evaluation/worst_examples.html")  # highlighted
    with tempfile.TemporaryDirectory() as tmp:
        for p in plots(result, det.threshold, Path(tmp)):
            mlflow.log_artifact(str(p), "plots")
    out = {"test": result["metrics"], "table": result["table"], "table_text": table_text, "families": families,
           "families_tagger_only": families_tagger_only}
    if job.register:
        out.update(register_model(job, det, val, result["metrics"], table_text, chosen.validation, card, cfg))
    return out


def register_model(job: Job, det, val: dict, test: dict, table_text: str, val_rows: list[dict], card: dict,
             cfg: TrainConfig) -> dict:
    """Log `det` as a new version of the job's registered model; it becomes champion if it beats the
    current one (re-scored on these validation rows when it was calibrated on other data)."""
    import mlflow

    from inference.model.detector import Detector
    from train.calibrate import fit_calibration
    from train.registry import log_detector, promote_if_better

    mlflow.log_text(model_card(job.register, job.kind, det, val, test, table_text, card, cfg), "model_card.md")
    version, _ = log_detector(det, job.register)

    def rescore(uri):
        return fit_calibration(Detector.load(uri), val_rows, cfg.calibration, cfg.seed, cfg.reading)

    promoted, message = promote_if_better(job.register, version, cfg.registry.alias, cfg.registry.metric,
                                          cfg.registry.tie_breaker, rescore)
    mlflow.set_tag("champion", str(promoted))
    print(message, flush=True)
    return {"version": version, "promoted": promoted, "message": message}


def train(cfg: TrainConfig, config_path: str | None = None) -> dict:
    """Run the whole pipeline; returns {"run_id", "models": {...}, "lofo": {...}, "seconds"}."""
    import mlflow

    t0 = time.time()
    cli.offline()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(MLFLOW_STORE)
    dd, card, data_cfg = ensure_dataset(cfg)
    splits = {s: dd[s].to_list() for s in dd}
    tables = {"swaps": data_build.load_tables(data_cfg.output_dir),
              "alternatives": data_build.load_alternatives(data_cfg.output_dir)}
    mlflow.set_experiment(cfg.experiment)
    results = {}
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tag("config_path", config_path or "")
        mlflow.log_dict(dataclasses.asdict(cfg), "config/train.yaml")
        mlflow.log_dict(dataclasses.asdict(data_cfg), "config/data.yaml")
        mlflow.log_dict(card, "dataset/card.json")
        mlflow.log_params({"dataset_hash": dataset_hash(card), "config": config_path or "",
                           **{f"data.rows.{s}": v["rows"] for s, v in card["counts"].items()}})
        for job in jobs_for(cfg):
            print(f"== {job.name}", flush=True)
            with mlflow.start_run(run_name=job.name, nested=True):
                mlflow.log_dict(dataclasses.asdict(cfg), "config/train.yaml")
                results[job.name] = r = fit_one(job, cfg, splits, card, tables)
            if job.exclude:
                mlflow.log_metrics({f"lofo.{job.exclude}.{k}": v for k, v in r["heldout"].items()})
                mlflow.log_metrics({f"lofo_{variant}.{job.exclude}.{k}": v
                                    for variant, f in r["heldout_variants"].items() for k, v in f.items()})
            else:
                mlflow.log_metrics({f"{job.name}.{k}": v for k, v in r["test"].items()})
        seconds = time.time() - t0
        mlflow.log_metric("total_seconds", seconds)
        report = summary(results, cfg.targets)
        mlflow.log_text(report, "evaluation/summary.txt")
    print(report)
    print(f"total {seconds / 60:.1f} min; MLflow run {parent.info.run_id} ({mlflow.get_tracking_uri()})")
    lofo = {r["exclude"]: r["heldout"] for r in results.values() if r["exclude"]}
    return {"run_id": parent.info.run_id, "models": results, "lofo": lofo, "seconds": seconds}


LOFO_COLUMNS = {"paragraph.roc_auc": "para ROC", "article.roc_auc": "art ROC", "paragraph.recall": "para rec",
                "article.recall": "art rec", "fpr": "clean FPR", "word_precision": "word P", "word_recall": "word R",
                "suggestion_accuracy": "sugg acc", "spun_read": "LM read"}


def lofo_table(title: str, rows: dict[str, dict]) -> str:
    """One line per family: figures on that family's spun texts against clean texts."""
    head = f"{'family':10s} " + " ".join(f"{c:>9s}" for c in LOFO_COLUMNS.values())
    lines = [title, head, "-" * len(head)]
    for family, m in rows.items():
        lines.append(f"{family:10s} " + " ".join(f"{m[c]:9.3f}" if c in m else f"{'-':>9s}" for c in LOFO_COLUMNS))
    return "\n".join(lines)


def fpr_table(metrics: dict) -> str:
    """Clean texts flagged per domain (rows) and length band (columns), with their counts."""
    domains = sorted({k.split(".")[1] for k in metrics if k.startswith("test_clean_fpr.")})
    lines = ["Clean texts flagged on the test split (share, texts):",
             f"{'domain':16s}" + "".join(f"{b:>18s}" for b in LENGTH_BANDS)]
    for d in domains:
        cells = [f"{metrics[f'test_clean_fpr.{d}.{b}']:.3f} of {metrics[f'test_clean_n.{d}.{b}']:4d}"
                 if f"test_clean_fpr.{d}.{b}" in metrics else "-" for b in LENGTH_BANDS]
        lines.append(f"{d:16s}" + "".join(f"{c:>18s}" for c in cells))
    medians = [f"{metrics[f'test_clean_median.{b}']:.3f}" if f"test_clean_median.{b}" in metrics else "-"
               for b in LENGTH_BANDS]
    lines.append(f"{'median score':16s}" + "".join(f"{c:>18s}" for c in medians))
    if "test_clean_article_spans" in metrics:
        lines.append(f"highlighted spans per clean article (all shown): {metrics['test_clean_article_spans']:.2f}")
    return "\n".join(lines)


def weight_choice(variants: dict[str, dict[str, dict]]) -> str:
    """The thorough-mode fusions on every fold: paragraph ROC-AUC per held-out family, the worst of them, and
    the weight to ship (configs/train.yaml's reading.tagger_weight): among the weights at least as good as the
    zero-shot score on every family, the one whose worst family is best; none such: the zero-shot score."""
    names = [v for v in variants if v == "zero_shot" or v.startswith("tagger_weight_")]
    if not names:
        return ""
    families = sorted({f for v in names for f in variants[v]})
    head = f"{'raw score':22s}" + "".join(f"{f:>11s}" for f in families) + f"{'worst':>9s}"
    lines = ["Thorough-mode raw scores, paragraph ROC-AUC per held-out family:", head, "-" * len(head)]
    rocs = {v: np.array([variants[v].get(f, {}).get("paragraph.roc_auc", np.nan) for f in families]) for v in names}
    worst = {v: float(np.nanmin(r)) if not np.all(np.isnan(r)) else float("nan") for v, r in rocs.items()}
    for v in names:
        lines.append(f"{v:22s}" + "".join(f"{x:11.3f}" for x in rocs[v]) + f"{worst[v]:9.3f}")
    if "zero_shot" in rocs:
        zero = rocs["zero_shot"]
        eligible = {v: worst[v] for v in names if v != "zero_shot"
                    and np.all((rocs[v] >= zero) | np.isnan(zero)) and worst[v] > worst["zero_shot"]}
        best = max(eligible, key=eligible.get) if eligible else None
        lines.append(f"ship {best} (worst family {eligible[best]:.3f}; zero-shot alone {worst['zero_shot']:.3f})"
                     if best else f"ship the zero-shot score (tagger_weight 0): no weight is at least as good on "
                                  f"every family with a better worst one (zero-shot worst {worst['zero_shot']:.3f})")
    return "\n".join(lines)


def targets_met(test: dict, heldout: dict[str, dict], targets: TargetsSection) -> str:
    lines = ["Targets (main model on the test split; each held-out family):"]
    goals = [(k, v, ">=", test.get(k)) for k, v in targets.at_least.items()]
    goals += [(k, v, "<=", test.get(k)) for k, v in targets.at_most.items()]
    goals += [(f"{family}: {k}", v, ">=", m.get(k)) for family, m in heldout.items()
              for k, v in targets.heldout_at_least.items()]
    for name, goal, op, v in goals:
        ok = v is not None and (v >= goal if op == ">=" else v <= goal)
        lines.append(f"  {name:32s} {'-' if v is None else f'{v:.4f}':>8s} {op} {goal}  {'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def summary(results: dict, targets: TargetsSection) -> str:
    parts = [r["table_text"] for r in results.values() if not r["exclude"]]
    heldout = {r["exclude"]: r["heldout"] for r in results.values() if r["exclude"]}
    variants: dict[str, dict] = {}
    for r in results.values():
        for variant, figures in (r.get("heldout_variants") or {}).items():
            if figures:
                variants.setdefault(variant, {})[r["exclude"]] = figures
    if heldout:
        parts.append(lofo_table("Leave-one-family-out (each row: a model that never saw the family, "
                                "scored on its spun texts vs clean texts of the same levels):", heldout))
    if "tagger_only" in variants:
        parts.append(lofo_table("The same folds in fast mode (tagger and lexicon only):", variants["tagger_only"]))
    if variants:
        parts.append(weight_choice(variants))
    main = results.get("tagger")
    if main:
        parts.append(lofo_table("The main tagger (trained on every family) on each family, same texts:",
                                main["families"]))
        parts.append(targets_met(main["test"], heldout, targets))
    parts += [r["message"] for r in results.values() if r["message"]]
    return "\n\n".join(p for p in parts if p)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train, evaluate and register unspin models.")
    cli.config_args(ap, "configs/train.yaml")
    args = ap.parse_args(argv)
    try:
        cfg = train_config.load(args.config, args.set)
        train(cfg, args.config)
    except (ConfigError, MissingCorpus) as e:
        return cli.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
