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
import sys
import time
from pathlib import Path

from data import cli
from data import configfile as cfglib
from inference.io.batch import run_batch
from inference.io.inputs import Record
from inference.io.outputs import check_not_an_input
from inference.matching.config import MatchConfig, load_config
from inference.matching.matcher import RELATIONS, Matcher, match_records
from inference.matching.store import IndexStateError, remove_index
from inference.report import Report, match_row, summary_line

# The command around inference.matching. Python callers may take Matcher, load_config and match_records from here
# too (docs/matching.md).


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
