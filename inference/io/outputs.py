"""Writing score records as JSONL, CSV or JSONL on stdout, and resuming an output cut short.

A score record is a dict with the fields of inference.model.record.ScoreRecord: id, score (0..1), label
("spun"|"clean"), threshold, model {name, version}, sentences [{start, end, score}], spans [{start, end, text,
score, suggestion}], error (None or message).

Each record is written whole in one call and flushed, so a crash can only cut off the last record; a
resumed writer drops that part and counts the ids of the complete records before it (`Writer.answered`).
CSV cells are standard CSV (line breaks kept, inside quotes) and safe to open in a spreadsheet: a cell
that would start a formula gets a leading apostrophe (`neutralise`), which `unneutralise` removes.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Self

from inference.io.inputs import STDIN, CsvRows
from inference.model.record import to_json, top_spans

CSV_COLUMNS = ["id", "score", "label", "threshold", "model", "n_spans", "top_spans", "error"]
TOP_SPANS = 5
FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
# OWASP's list of the characters a spreadsheet starts a formula with, plus the apostrophe itself, so that
# an apostrophe added in front of a cell is always one we added and can be taken off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def output_format(path: str) -> str:
    if path == STDIN:
        return "jsonl"
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ValueError(f"output must end in .jsonl or .csv, or be - for stdout: {path}")
    return fmt


def check_not_an_input(output: str, inputs: Iterable[str]) -> None:
    """Refuse an output that is one of the inputs, or inside an input directory, however it is spelled
    (links, relative paths, hard links): opening it for writing would destroy data before it is read."""
    if output == STDIN:
        return
    out = os.path.realpath(output)
    for name in inputs:
        if name == STDIN or not os.path.exists(name):
            continue
        src = os.path.realpath(name)
        if os.path.isdir(src):
            if os.path.commonpath([out, src]) == src:
                raise ValueError(f"the output {output} is inside the input directory {name}: write it elsewhere")
        elif out == src or (os.path.exists(out) and os.path.samefile(out, src)):
            raise ValueError(f"the output {output} is the input {name}: write it elsewhere")


def json_line(record: dict) -> str:
    return to_json(record) + "\n"


def csv_cells(record: dict) -> list[str]:
    """The flat CSV row of a score record."""
    model = record.get("model") or {}
    spans = record.get("spans") or []
    cells = [
        record.get("id"),
        record.get("score"),
        record.get("label"),
        record.get("threshold"),
        f"{model.get('name', '')}/{model.get('version', '')}" if model else "",
        len(spans) if record.get("spans") is not None else "",
        top_spans(spans, TOP_SPANS),
        record.get("error"),
    ]
    return [neutralise(_str(c)) if c is not None else "" for c in cells]


def neutralise(cell: str) -> str:
    """A cell a spreadsheet would run as a formula, as text (OWASP: a leading apostrophe)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def unneutralise(cell: str) -> str:
    return cell.removeprefix("'")


def _str(value) -> str:
    return str(value.item() if hasattr(value, "item") else value)


def csv_line(cells: list) -> str:
    # RFC 4180 line ends (CRLF): the csv writer then quotes a cell holding a bare CR too, not only LF
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(cells)
    return buf.getvalue()


def id_key(rid: str) -> bytes:
    """What `--resume` remembers of an id: a 128-bit digest, so memory does not grow with long ids."""
    return hashlib.blake2b(rid.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def read_answered(path: str, fmt: str) -> tuple[Counter, int]:
    """(records written per id key, byte length of the complete records) of an existing output, read as
    a stream. A record cut off by a crash can only be the last one; it is not counted."""
    with open(path, "rb") as f:
        return _answered_csv(f, path) if fmt == "csv" else _answered_jsonl(f, path)


def _answered_jsonl(f, path: str) -> tuple[Counter, int]:
    answered, end = Counter(), 0
    for n, line in enumerate(f, 1):
        if not line.endswith(b"\n"):
            break  # cut off by a crash
        try:
            rid = json.loads(line).get("id")
        except (ValueError, AttributeError):
            rid = None
        if not isinstance(rid, str):
            raise ValueError(f"cannot resume {path}: line {n} is not an output record with an id")  # noqa: TRY004
        answered[id_key(rid)] += 1
        end += len(line)
    return answered, end


def _answered_csv(f, path: str) -> tuple[Counter, int]:
    answered, end = Counter(), 0
    for row in CsvRows(f):
        if not row.complete:
            break  # cut off by a crash
        if row.error:
            raise ValueError(f"cannot resume {path}: line {row.line} is not a CSV record ({row.error})")
        if end == 0:
            if row.cells != CSV_COLUMNS:
                raise ValueError(f"cannot resume {path}: its header is not {','.join(CSV_COLUMNS)!r}")
        else:
            answered[id_key(unneutralise(row.cells[0]))] += 1
        end = row.end
    return answered, end


class Writer:
    """Writes score records to `path` (.jsonl, .csv, or - for stdout). Use via `open_writer`.

    Every record is written whole and flushed: a crash leaves only complete records (and at most a
    cut-off last one), so `--resume` can carry on from where it stopped. resume=False starts the file
    afresh; resume=True keeps its complete records (counted by id in `answered`), drops a cut-off one and
    appends.
    """

    def __init__(self, path: str, resume: bool):
        self.path = path
        self.format = output_format(path)
        self.count = 0
        self.answered: Counter = Counter()
        if path == STDIN:
            self._f = sys.stdout
            return
        end = 0
        if resume and os.path.exists(path):
            self.answered, end = read_answered(path, self.format)
            os.truncate(path, end)
        self._f = open(path, "a" if resume else "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed in close())
        if self.format == "csv" and end == 0:
            self._write(csv_line(CSV_COLUMNS))

    def _write(self, text: str) -> None:
        self._f.write(text)  # the whole record in one call, built before anything is written
        self._f.flush()

    def write(self, record: dict) -> None:
        self._write(csv_line(csv_cells(record)) if self.format == "csv" else json_line(record))
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
