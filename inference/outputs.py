"""Writing score records as JSONL, CSV or JSONL on stdout.

A score record is a dict: id, score (0..1), label ("spun"|"clean"), threshold, model {name, version},
sentences [{start, end, score}], spans [{start, end, text, score, suggestion}], error (None or message).

Each record is written as one whole line and flushed, so a crash can only cut off the last line;
`read_ids` ignores that line and a resumed writer drops it, so that record is simply scored again.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from typing import Self

CSV_COLUMNS = ["id", "score", "label", "threshold", "model", "n_spans", "top_spans", "error"]
TOP_SPANS = 5
FORMATS = {".jsonl": "jsonl", ".csv": "csv"}


def output_format(path: str) -> str:
    if path == "-":
        return "jsonl"
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ValueError(f"output must end in .jsonl or .csv, or be - for stdout: {path}")
    return fmt


def json_line(record: dict) -> str:
    # allow_nan=False: NaN is not JSON; failing here is better than a file other tools cannot read.
    return json.dumps(record, ensure_ascii=False, allow_nan=False, default=_plain) + "\n"


def _plain(value):
    """numpy scalars and arrays (from the model) as plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def csv_cells(record: dict) -> list[str]:
    """The flat CSV row of a score record (one physical line: newlines in cells become spaces)."""
    model = record.get("model") or {}
    spans = record.get("spans") or []
    top = sorted(spans, key=lambda s: -(s.get("score") or 0))[:TOP_SPANS]
    cells = [
        record.get("id"),
        record.get("score"),
        record.get("label"),
        record.get("threshold"),
        f"{model.get('name', '')}/{model.get('version', '')}" if model else "",
        len(spans) if record.get("spans") is not None else "",
        " | ".join(_span_text(s) for s in top),
        record.get("error"),
    ]
    return [" ".join(_str(c).splitlines()) if c is not None else "" for c in cells]


def _span_text(span: dict) -> str:
    suggestion = span.get("suggestion")
    return f"{span.get('text', '')} -> {suggestion}" if suggestion else str(span.get("text", ""))


def _str(value) -> str:
    return str(value.item() if hasattr(value, "item") else value)


def csv_line(cells: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


class Writer:
    """Writes score records to `path` (.jsonl, .csv, or - for stdout). Use via `open_writer`.

    Every record is one whole line, flushed as it is written: a crash leaves only complete records
    (and at most a cut-off last line), so `--resume` can carry on from where it stopped.
    resume=False starts the file afresh; resume=True appends, first dropping a cut-off last line.
    """

    def __init__(self, path: str, resume: bool):
        self.path, self.resume = path, resume
        self.format = output_format(path)
        self.count = 0
        if path == "-":
            self._f = sys.stdout
            return
        if resume:
            _drop_partial_line(path)
        self._f = open(path, "a" if resume else "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed in close())
        if self.format == "csv":
            self._start_csv()

    def _start_csv(self):
        header = csv_line(CSV_COLUMNS)
        if self.resume and os.path.getsize(self.path) > 0:
            with open(self.path, encoding="utf-8", newline="") as f:
                first = f.readline()
            if first != header:
                self._f.close()
                raise ValueError(f"cannot resume {self.path}: its header is not {header.strip()!r}")
            return
        self._f.write(header)
        self._f.flush()

    def write(self, record: dict) -> None:
        line = csv_line(csv_cells(record)) if self.format == "csv" else json_line(record)
        self._f.write(line)  # the whole line in one call, built before anything is written
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        if self._f is None:
            return
        f, self._f = self._f, None
        f.flush()
        if f is not sys.stdout:
            os.fsync(f.fileno())
            f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def open_writer(path: str, resume: bool) -> Writer:
    return Writer(path, resume)


def _drop_partial_line(path: str, chunk: int = 1 << 16) -> int:
    """Truncate `path` after its last newline; returns the number of bytes dropped (0 if none/no file)."""
    if not os.path.exists(path):
        return 0
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            block = f.read(end - start)
            i = block.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            f.truncate(keep)
        return size - keep
