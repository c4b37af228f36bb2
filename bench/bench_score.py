"""Batch-scoring benchmark: articles/s, tokens/s and peak RSS per model variant, plus the accuracy
change of each speed-up on the test split. Prints figures, and writes them to bench/README.md (sections
`score` and `score-accuracy`, bench/table.py); asserts nothing about time.

    python bench/bench_score.py [--articles 200] [--no-accuracy]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import table
from data import cli

# (model setting, int8 encoder, mode): the default is the int8 tagger in thorough mode (the language model reads all)
VARIANTS = {"thorough (int8 tagger + LM)": ("model", True, "thorough"), "fast (int8 tagger)": ("model", True, "fast"),
            "thorough (fp32 tagger + LM)": ("model", False, "thorough"), "baseline": ("baseline_model", None, "fast")}
# test-split figures of each variant (`test_<name>` in train.evaluate's metrics)
ACCURACY = ("sentence_f1", "sentence_spun20_f1", "word_f1", "article_roc_auc", "article_f1", "mrpc_fpr")


def bench_articles(n: int, min_words: int = 300, max_words: int = 500) -> list[str]:
    """BBC-sized test articles (clean and spun) from the built dataset."""
    from datasets import load_from_disk

    from data.build import load_config

    rows = load_from_disk(load_config(ROOT / "configs/data.yaml").output_dir)["test"]
    texts = [r["text"] for r in rows if r["level"] == "article" and min_words <= len(r["text"].split()) <= max_words]
    return texts[:n]


def measure(variant: str, n: int, batch_size: int) -> dict:
    """Run in a fresh process so peak RSS belongs to this variant alone."""
    from inference import Detector, settings

    cfg = settings.load()
    key, quantize, mode = VARIANTS[variant]
    det = Detector.load(getattr(cfg, key), quantize=quantize, mode=mode)
    texts = bench_articles(n)
    det.score(texts[:4])  # warm-up (loads the language model too, in thorough mode)
    det.stats.clear()
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        det.score(texts[i:i + batch_size])
    seconds = time.perf_counter() - t0
    if det.tagger is not None:
        tokens = sum(len(ids) for ids in det.tagger.tokenizer(texts)["input_ids"])
    else:
        tokens = sum(len(t.split()) for t in texts)
    # the precision the language model computed in: bfloat16 only where the CPU has it natively (data.lm.native)
    lm = det.reader.lm.precision if mode == "thorough" and det.reader is not None else "-"
    return {"variant": variant, "articles": len(texts), "mean_words": sum(len(t.split()) for t in texts) / len(texts),
            "lm_precision": lm,
            "context_share": det.stats["read_words"] / max(1, det.stats["prose_words"]),
            "articles_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def accuracy(variant: str) -> dict:
    """Test-split figures of a variant (same calibration as shipped)."""
    from datasets import load_from_disk

    from data.build import load_config
    from inference import Detector, settings
    from train.evaluate import evaluate

    cfg = settings.load()
    key, quantize, mode = VARIANTS[variant]
    det = Detector.load(getattr(cfg, key), quantize=quantize, mode=mode)
    rows = load_from_disk(load_config(ROOT / "configs/data.yaml").output_dir)["test"].to_list()
    m = evaluate(det, rows)["metrics"]
    return {k: m.get(f"test_{k}") for k in ACCURACY}


def settings_model() -> str:
    from inference import settings

    return settings.load().model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: one measurement in this process
    ap.add_argument("--what", default="speed", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cli.offline()
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + str(ROOT / "mlflow.db"))
    if args.variant:
        fn = measure(args.variant, args.articles, args.batch_size) if args.what == "speed" else accuracy(args.variant)
        print(json.dumps(fn))
        return 0
    print(f"batch scoring, {args.articles} BBC-sized test articles, batch {args.batch_size}, "
          f"{os.cpu_count()} CPU cores")
    print(f"{'variant':28s} {'articles/s':>10s} {'tokens/s':>10s} {'peak RSS MB':>12s} {'read by LM':>10s} "
          f"{'LM precision':>12s}")
    rows = []
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--articles", str(args.articles),
                              "--batch-size", str(args.batch_size)],
                             capture_output=True, check=False, text=True, cwd=ROOT)
        if out.returncode:
            print(f"{variant:28s} failed: {out.stderr.strip().splitlines()[-1:]}")
            rows.append([variant, "failed"])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{variant:28s} {r['articles_per_s']:10.1f} {r['tokens_per_s']:10.0f} {r['peak_rss_mb']:12.0f}"
              f" {r['context_share']:10.0%} {r['lm_precision']:>12s}   (mean {r['mean_words']:.0f} words/article)")
        rows.append([variant, f"{r['articles_per_s']:.1f}", f"{r['tokens_per_s']:,.0f}",
                     f"{r['peak_rss_mb'] / 1024:.2f} GB", f"{r['context_share']:.0%}", r["lm_precision"],
                     f"{r['mean_words']:.0f}"])
    table.write_section("score", ["variant", "articles/s", "tokens/s", "peak RSS", "read by the language model",
                                  "its precision", "mean words"], rows,
                        f"{table.provenance()} Model: `{settings_model()}`; {args.articles} articles, "
                        f"batch {args.batch_size}.")
    if not args.no_accuracy:
        print("\naccuracy on the test split per variant (speed-ups change these, if at all):")
        rows = []
        for variant in [v for v in VARIANTS if v != "baseline"]:
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--what", "accuracy"],
                                 capture_output=True, check=False, text=True, cwd=ROOT)
            r = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
            print(f"{variant:28s} " + ", ".join(f"{k}={v:.4f}" for k, v in r.items() if v is not None))
            rows.append([variant] + [f"{r[k]:.4f}" if r.get(k) is not None else "" for k in ACCURACY])
        table.write_section("score-accuracy", ["variant", *ACCURACY], rows,
                            f"{table.provenance()} Model: `{settings_model()}`; the test split.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
