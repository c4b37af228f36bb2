"""Readers for the raw corpora. Bad rows are skipped and counted, never fatal."""
from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

csv.field_size_limit(1 << 30)


class MissingCorpus(FileNotFoundError):
    pass


def require(root: Path, relative: str, setting: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise MissingCorpus(
            f"corpus file not found: {path} (set by `{setting}` relative to data_root={root}; "
            f"change data_root in the config or set UNSPIN_DATA_ROOT)")
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# AG News carries HTML entities, some with their "&" lost: "&lt;TXN.N&gt;", "it#39;s", "#151;".
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);|(?<!&)#\d{2,3};")


def _unescape(m: re.Match) -> str:
    entity = m.group()
    char = html.unescape(entity if entity[0] == "&" else "&" + entity)
    return char if char.isprintable() else entity


def clean_text(value, max_chars: int) -> tuple[str | None, str | None]:
    """(text, None) for usable text, else (None, reason the row is skipped). HTML entities are decoded:
    the spinner and the model should see "<TXN.N>" and "it's", not markup debris."""
    if not isinstance(value, str):
        return None, "non_text"
    if not value.strip():
        return None, "empty"
    if len(value) > max_chars:
        return None, "too_long"
    if "\x00" in value:
        return None, "non_text"
    return _ENTITY.sub(_unescape, value), None


def read_jsonl(path: Path, skipped: Counter) -> Iterator[dict]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                skipped[f"{path.name}:malformed"] += 1
                continue
            if isinstance(row, dict):
                yield row
            else:
                skipped[f"{path.name}:malformed"] += 1


def read_tsv(path: Path, skipped: Counter) -> Iterator[dict]:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if None in row or any(v is None for v in row.values()):
                skipped[f"{path.name}:malformed"] += 1
                continue
            yield row
