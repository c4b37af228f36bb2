"""Score articles from files: `python -m inference.score INPUT... --output OUT`.

INPUT: .txt/.md/.html files or directories of them, .jsonl (id, text), .csv (id, text), or - (JSONL
on stdin). A symlink in a directory that leads to a file outside it gets an error record, unless
--follow-symlinks. OUT: .jsonl (full score records), .csv (flat), or - (JSONL on stdout). One output record
per input record, in input order; bad records get `error` set. --report REPORT.html also writes the records
over their texts as one self-contained HTML page (inference/report.py). Exit status is non-zero only when the
command itself cannot run (bad arguments, model not loadable, output not writable).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time

from data import cli
from inference import settings
from inference.io.batch import run_batch
from inference.io.outputs import check_not_an_input
from inference.model.detector import MODES, SPANS
from inference.report import Report, summary_line
from inference.run_detector import load_detector, score_batch

# An argument of `run` left out: its value is the one in configs/inference.yaml, as for the command.
# (Not None: None is a value there, "the model's own threshold" or "the precision it was calibrated at".)
CONFIGURED = object()


def run(inputs: list[str], output: str, model=CONFIGURED, threshold=CONFIGURED, resume: bool = False,
        batch_size=CONFIGURED, max_bytes=CONFIGURED, progress: bool = True, quantize=CONFIGURED,
        report: str | None = None, mode=CONFIGURED, spans=CONFIGURED, follow_symlinks: bool = False,
        baseline: bool = False, cfg: settings.InferenceConfig | None = None) -> dict:
    """Score `inputs` into `output` (and the HTML `report`); returns the summary figures. `model`, `threshold`,
    `batch_size`, `max_bytes`, `quantize`, `mode` and `spans` not given are read from `cfg` (default:
    configs/inference.yaml), `model` from its `baseline_model` if `baseline`; `follow_symlinks` as for
    `iter_records`."""
    for out in (output, report):  # before anything else: the writers would truncate them
        if out is not None:
            check_not_an_input(out, inputs)
    cfg = cfg or settings.load()
    if baseline and model is CONFIGURED:
        model = cfg.baseline_model
    given = {"model": model, "threshold": threshold, "batch_size": batch_size, "max_bytes": max_bytes,
             "quantize": quantize, "mode": mode, "spans": spans}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not CONFIGURED})
    det = load_detector(cfg)
    return score_files(det, inputs, output, resume, cfg.batch_size, cfg.max_bytes, progress, report, follow_symlinks)


def score_files(det, inputs: list[str], output: str, resume: bool = False, batch_size: int | None = None,
                max_bytes: int | None = None, progress: bool = True, report: str | None = None,
                follow_symlinks: bool = False) -> dict:
    """`run` with a loaded detector: one record per input record, in order (inference.io.batch). `batch_size` and
    `max_bytes` not given are read from configs/inference.yaml; `follow_symlinks` as for `iter_records`."""
    if batch_size is None or max_bytes is None:
        cfg = settings.load()
        batch_size = cfg.batch_size if batch_size is None else batch_size
        max_bytes = cfg.max_bytes if max_bytes is None else max_bytes

    def process(records):
        records = iter(records)
        while batch := list(itertools.islice(records, batch_size)):
            yield from score_batch(det, batch)

    html = None
    if report is not None:
        html = Report(report, "score", f"unspin: {', '.join(map(str, inputs))}")
    t0 = time.time()
    counts = run_batch(inputs, output, process, lambda rec: "errors" if rec["error"] else rec["label"],
                       max_bytes, resume, progress, observe=html and (lambda r, rec: html.add_score(r.text, rec)),
                       follow_symlinks=follow_symlinks)
    seconds = time.time() - t0
    if html is not None:
        html.close(summary_line(counts, ["spun", "clean", "errors"], det.model_info, det.threshold))
    return {**{k: counts[k] for k in ("records", "spun", "clean", "errors", "skipped")},
            "seconds": round(seconds, 2), "articles_per_second": round(counts["records"] / max(seconds, 1e-9), 2),
            "model": det.model_info, "threshold": det.threshold, "mode": det.mode}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("inputs", nargs="+", metavar="INPUT")
    ap.add_argument("--output", "-o", required=True, metavar="OUT")
    settings.add_common_args(ap, "inference config (default configs/inference.yaml)")
    ap.add_argument("--baseline", action="store_true", help="use the fast baseline model (`baseline_model`)")
    ap.add_argument("--threshold", type=float, help="override the shipped threshold (default `threshold`)")
    ap.add_argument("--resume", action="store_true",
                    help="carry on after the records already in OUT (per id, as many as it holds) and append")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--quantize", action=argparse.BooleanOptionalAction, default=None,
                    help="int8 (or --no-quantize: full-precision) encoder weights; default: configs/inference.yaml's quantize")
    ap.add_argument("--mode", choices=MODES, help="thorough: the language model reads every sentence; fast: the "
                                                  "tagger alone (default `mode`: the model's own)")
    ap.add_argument("--spans", choices=SPANS, help="flagged: spans of texts labelled spun only; all: of every text "
                                                   "(default `spans`)")
    ap.add_argument("--report", metavar="REPORT.html",
                    help="also write the records over their texts as one HTML page (spans highlighted, offline)")
    ap.add_argument("--follow-symlinks", action="store_true",
                    help="read symlinks in an input directory that lead to files outside it (default: error record)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        ap.error("--threshold must be between 0 and 1")
    if args.batch_size is not None and args.batch_size < 1:
        ap.error("--batch-size must be at least 1")
    # what the command line gave (--model also as an override, and here so that it wins over --baseline)
    flags = {"model": args.model, "threshold": args.threshold, "batch_size": args.batch_size,
             "quantize": args.quantize, "mode": args.mode, "spans": args.spans}
    try:
        cfg = settings.load(args.config, settings.overrides(args))
        settings.process_defaults(cfg)
        summary = run(args.inputs, args.output, resume=args.resume, progress=not args.quiet, report=args.report,
                      follow_symlinks=args.follow_symlinks, baseline=args.baseline, cfg=cfg,
                      **{k: v for k, v in flags.items() if v is not None})  # the rest: run() reads cfg
    except Exception as e:  # noqa: BLE001 - the command cannot run: say why, exit non-zero
        return cli.fail(e, name_the_error=True)
    print(f"{summary['records']} records: {summary['spun']} spun, {summary['clean']} clean, "
          f"{summary['errors']} errors, {summary['skipped']} skipped (resume); "
          f"{summary['articles_per_second']} articles/s; model {summary['model']['name']} "
          f"v{summary['model']['version']}, {summary['mode']} mode, threshold {summary['threshold']:.3f}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
