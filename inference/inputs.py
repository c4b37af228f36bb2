"""Batch inputs for `python -m inference.score INPUT... --output OUT`.

Every input record becomes exactly one `Record`, in input order. Bad data never raises: it becomes a
Record with `error` set (and `text` None) so the output keeps one row per input and the batch goes on.
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

ARTICLE_EXTS = {".txt", ".md", ".html", ".htm"}
HTML_EXTS = {".html", ".htm"}
STDIN = "-"

# Elements whose text is never prose (code, styling, fallbacks, templates, page metadata).
DROP_TAGS = {"script", "style", "noscript", "template", "svg", "meta", "link"}
# Elements that start a new block: their text becomes its own blank-line-separated paragraph.
BLOCK_TAGS = {
    "p", "div", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "br", "hr",
    "article", "section", "header", "footer", "nav", "aside", "main", "tr", "table", "caption",
    "blockquote", "pre", "figure", "figcaption", "form", "fieldset", "legend", "address", "details",
    "summary", "dialog", "menu", "body",
}
CELL_TAGS = {"td", "th"}  # cells of one row stay in one block, but must not run together

csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # we enforce max_bytes ourselves


@dataclass
class Record:
    id: str
    text: str | None = None
    title: str | None = None
    error: str | None = None


def iter_records(inputs: list[str], max_bytes: int, stdin: BinaryIO | None = None) -> Iterator[Record]:
    """One Record per input record across `inputs`, in order. `stdin` (binary) replaces sys.stdin for `-`."""
    for name in inputs:
        try:
            if name == STDIN:
                yield from _iter_jsonl(stdin or sys.stdin.buffer, "<stdin>", max_bytes)
            elif os.path.isdir(name):
                yield from _iter_directory(name, max_bytes)
            elif not os.path.exists(name):
                yield Record(id=name, error=f"cannot read input {name}: no such file or directory")
            else:
                ext = os.path.splitext(name)[1].lower()
                if ext == ".jsonl":
                    with open(name, "rb") as f:
                        yield from _iter_jsonl(f, name, max_bytes)
                elif ext == ".csv":
                    yield from _iter_csv(name, max_bytes)
                elif ext in ARTICLE_EXTS:
                    yield read_article(name, name, max_bytes)
                else:
                    yield Record(id=name, error=f"unsupported input type {ext or '(no extension)'}: {name} "
                                                f"(expected .txt .md .html .htm .jsonl .csv or -)")
        except OSError as e:  # e.g. permission denied, or a read error part-way through a file
            yield Record(id=name, error=f"cannot read input {name}: {e.strerror or e}")


# --- article files -------------------------------------------------------------------------------

def _iter_directory(root: str, max_bytes: int) -> Iterator[Record]:
    """Article files under `root`, recursively, sorted by relative path; other files are skipped."""
    found: list[tuple[tuple[str, ...], str, str | None]] = []  # (sort key, path, error)

    def unreadable(e: OSError):
        where = e.filename or root
        found.append((_rel_parts(where, root), where, f"cannot read directory {where}: {e.strerror or e}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .git, editor state...
        for fn in filenames:
            path = os.path.join(dirpath, fn)
            if (not fn.startswith(".") and os.path.splitext(fn)[1].lower() in ARTICLE_EXTS
                    and os.path.isfile(path)):  # not FIFOs/devices: reading them could block
                found.append((_rel_parts(path, root), path, None))
    for parts, path, error in sorted(found):
        rid = "/".join(parts) or root
        yield Record(id=rid, error=error) if error else read_article(path, rid, max_bytes)


def _rel_parts(path: str, root: str) -> tuple[str, ...]:
    return Path(os.path.relpath(path, root)).parts


def read_article(path: str, rid: str, max_bytes: int) -> Record:
    """One article file (.txt/.md as is, .html/.htm reduced to text) as a Record."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                return Record(id=rid, error=_too_big("file", size, max_bytes))
            data = f.read(max_bytes + 1)  # bounded even when st_size lies (pipes, growing files)
    except OSError as e:
        return Record(id=rid, error=f"cannot read {path}: {e.strerror or e}")
    if len(data) > max_bytes:
        return Record(id=rid, error=_too_big("file", len(data), max_bytes))
    if looks_binary(data):
        return Record(id=rid, error="binary file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Record(id=rid, error="not UTF-8 text")
    title = None
    if os.path.splitext(path)[1].lower() in HTML_EXTS:
        try:
            text, title = html_to_text(text)
        except HtmlError as e:
            return Record(id=rid, error=str(e))
    if not text.strip():
        return Record(id=rid, title=title, error="empty text")
    return Record(id=rid, text=text, title=title)


def looks_binary(data: bytes, sample: int = 8192) -> bool:
    """NUL bytes anywhere, or mostly control bytes other than white space in the first `sample` bytes."""
    if b"\x00" in data:
        return True
    head = data[:sample]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13) or b == 127)
    return bool(head) and controls / len(head) > 0.3


class HtmlError(ValueError):
    """An HTML page that cannot be reduced to text faithfully."""


def html_to_text(html: str) -> tuple[str, str | None]:
    """(text, title): visible text as blank-line-separated blocks with white space collapsed inside.

    Parsed by libxml2 (lxml), which takes linear time on any page, and read in one pass. Navigation,
    footers etc. are kept (inference.prose decides what is prose); blocks are never merged. An unclosed
    <title> runs to the end of the page in HTML, as in a browser; its markup is then read as the page.
    Raises HtmlError for a page nested deeper than libxml2 follows (2048 elements), rather than lose
    what comes after that point.
    """
    root = _parse_html(html)
    title_el = _first_title(root)
    text = _blocks(root, title_el)
    if not text and title_el is not None and "<" in (title_el.text or ""):  # an unclosed <title>
        inner = _parse_html(title_el.text)
        return _blocks(inner, _first_title(inner)), None
    title = " ".join((title_el.text or "").split()) if title_el is not None else ""
    return text, title or None


def _first_title(root):
    return next(root.iter("title"), None) if root is not None else None


def _parse_html(html: str):
    # huge_tree: libxml2 follows nesting 2048 deep instead of 256 (real pages can be sloppy); it bounds the
    # work per tag either way. Input size is bounded by the callers (max_bytes).
    parser = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True,
                              huge_tree=True)
    root = etree.fromstring(html.encode("utf-8", "replace"), parser)
    fatal = parser.error_log.filter_from_fatals()
    if fatal:  # libxml2 stopped there (nesting too deep): say so rather than return part of the page
        raise HtmlError(f"HTML not readable: {fatal[-1].message.split(', use ')[0]}")
    return root


def _blocks(root, skip) -> str:
    """The text of `root` as blocks: a block tag starts and ends one; a cell adds a space; the text inside
    DROP_TAGS and `skip` (the title) is left out."""
    blocks, current = [], []

    def flush():
        blocks.append(" ".join("".join(current).split()))
        current.clear()

    walk = etree.iterwalk(root, events=("start", "end")) if root is not None else ()
    for event, el in walk:
        tag = el.tag if isinstance(el.tag, str) else None  # None: a comment or other non-element node
        dropped = tag is None or tag in DROP_TAGS or el is skip
        if event == "start":
            if dropped:
                walk.skip_subtree()  # its end event still comes, for the tail
                continue
            if tag in BLOCK_TAGS:
                flush()
            current.append(el.text or "")
            continue
        if not dropped and tag in BLOCK_TAGS:
            flush()
        elif not dropped and tag in CELL_TAGS:
            current.append(" ")
        current.append(el.tail or "")
    flush()
    return "\n\n".join(b for b in blocks if b)


# --- JSONL and CSV -------------------------------------------------------------------------------

def _iter_jsonl(stream: BinaryIO, name: str, max_bytes: int) -> Iterator[Record]:
    # A line may hold a text of max_bytes escaped up to 6x (\u00XX) plus the other fields.
    line_limit = 6 * max_bytes + (1 << 16)
    for lineno, line, size in _read_lines(stream, line_limit):
        where = f"{name}:{lineno}"
        if line is None:
            yield Record(id=where, error=f"line {lineno} is {size} bytes, over the limit of {line_limit} bytes")
            continue
        if not line.strip():
            continue
        if lineno == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")  # UTF-8 byte order mark
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            yield Record(id=where, error=f"line {lineno}: not UTF-8 text")
            continue
        except ValueError as e:  # JSONDecodeError, or absurd numbers
            yield Record(id=where, error=f"line {lineno}: malformed JSON: {getattr(e, 'msg', e)}")
            continue
        if not isinstance(row, dict):
            yield Record(id=where, error=f"line {lineno}: not a JSON object")
            continue
        yield make_record(row, where, max_bytes)


def _read_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line, size); line is None when longer than `limit` (then skipped, not held in memory)."""
    lineno = 0
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        lineno += 1
        if len(line) <= limit:
            yield lineno, line, len(line)
            continue
        size = len(line)
        while not line.endswith(b"\n"):
            line = stream.readline(1 << 20)
            if not line:
                break
            size += len(line)
        yield lineno, None, size


def _iter_csv(path: str, max_bytes: int) -> Iterator[Record]:
    # surrogateescape: undecodable bytes become lone surrogates, so only the rows holding them fail.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
        except csv.Error as e:
            yield Record(id=path, error=f"malformed CSV header: {e}")
            return
        missing = [c for c in ("id", "text") if c not in header]
        if missing:
            yield Record(id=path, error=f"CSV has no column {', '.join(missing)} (columns: {', '.join(header)})")
            return
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield Record(id=f"{path}:{reader.line_num}", error=f"line {reader.line_num}: malformed CSV: {e}")
                continue
            where = f"{path}:{reader.line_num}"
            values = [v for v in row.values() if isinstance(v, str)]
            if any(_bad_unicode(v) for v in values):
                yield Record(id=_clean_id(row.get("id")) or where, error="not UTF-8 text")
                continue
            yield make_record(row, where, max_bytes)


# --- validation ----------------------------------------------------------------------------------

def make_record(row: dict, where: str, max_bytes: int) -> Record:
    """A Record from a JSONL object or CSV row; `where` (file:line) keys records that have no id."""
    rid = _clean_id(row.get("id"))
    if rid is None:
        return Record(id=where, error="missing id")
    title = row.get("title")
    title = title if isinstance(title, str) and title.strip() and not _bad_unicode(title) else None
    error = text_error(row.get("text"), max_bytes)
    if error:
        return Record(id=rid, title=title, error=error)
    return Record(id=rid, text=row["text"], title=title)


def text_error(text, max_bytes: int) -> str | None:
    """Why `text` cannot be scored, or None."""
    if not isinstance(text, str):
        return "text missing" if text is None else f"text is not a string ({type(text).__name__})"
    if _bad_unicode(text):
        return "not UTF-8 text"
    data = text.encode("utf-8")
    if len(data) > max_bytes:
        return _too_big("text", len(data), max_bytes)
    if not text.strip():
        return "empty text"
    if looks_binary(data):
        return "binary data in text"
    return None


def _clean_id(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    value = str(value)
    if not value.strip():
        return None
    return value if not _bad_unicode(value) else value.encode("utf-8", "backslashreplace").decode("utf-8")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_unicode(s: str) -> bool:
    """Lone surrogates (from undecodable bytes or JSON "\\udXXX" escapes) cannot be written as UTF-8."""
    return _SURROGATE.search(s) is not None


def _too_big(what: str, size: int, limit: int) -> str:
    return f"{what} is {size} bytes, over the limit of {limit} bytes"


# --- resume --------------------------------------------------------------------------------------

def read_ids(path: str) -> set[str]:
    """Ids already in an output file (JSONL, or CSV with an `id` column), for --resume.

    Anything after the last newline is a record cut off by a crash: it is ignored here and dropped by
    the writer on resume, so that record is scored again.
    """
    if path == STDIN or not os.path.exists(path):
        return set()
    with open(path, "rb") as f:
        lines = [ln.decode("utf-8", "replace") for ln in _complete_lines(f)]
    ids: set[str] = set()
    if path.lower().endswith(".csv"):
        rows = csv.reader(lines)
        header = next(rows, [])
        if "id" in header:
            col = header.index("id")
            ids.update(r[col] for r in rows if len(r) > col and r[col])
        return ids
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            ids.add(row["id"])
    return ids


def _complete_lines(f: Iterable[bytes]) -> Iterator[bytes]:
    for line in f:
        if line.endswith(b"\n"):
            yield line
