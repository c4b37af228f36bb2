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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

ARTICLE_EXTS = {".txt", ".md", ".html", ".htm"}
HTML_EXTS = {".html", ".htm"}
BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark
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


def iter_records(inputs: list[str], max_bytes: int, stdin: BinaryIO | None = None,
                 follow_symlinks: bool = False) -> Iterator[Record]:
    """One Record per input record across `inputs`, in order. `stdin` (binary) replaces sys.stdin for `-`.
    `follow_symlinks`: read the files of a directory that are symlinks to files outside it (by default each
    gets an error record instead)."""
    for name in inputs:
        try:
            if name == STDIN:
                yield from _iter_jsonl(stdin or sys.stdin.buffer, "<stdin>", max_bytes)
            elif os.path.isdir(name):
                yield from _iter_directory(name, max_bytes, follow_symlinks)
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

def _iter_directory(root: str, max_bytes: int, follow_symlinks: bool = False) -> Iterator[Record]:
    """Article files under `root`, recursively, sorted by relative path; other files are skipped. A symlink
    to a file outside `root` gets an error record unless `follow_symlinks`: a tree handed over to be scored
    must not make the command read (and copy into its output or report) files from elsewhere on the machine.
    Symlinked directories are not descended (os.walk's default), so they cannot lead out either."""
    found: list[tuple[tuple[str, ...], str, str | None]] = []  # (sort key, path, error)
    real_root = os.path.realpath(root)

    def unreadable(e: OSError):
        where = e.filename or root
        found.append((_rel_parts(where, root), where, f"cannot read directory {where}: {e.strerror or e}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # .git, editor state...
        for fn in filenames:
            path = os.path.join(dirpath, fn)
            if (not fn.startswith(".") and os.path.splitext(fn)[1].lower() in ARTICLE_EXTS
                    and os.path.isfile(path)):  # not FIFOs/devices: reading them could block
                outside = (not follow_symlinks and os.path.islink(path)
                           and not _is_within(os.path.realpath(path), real_root))
                found.append((_rel_parts(path, root), path, f"symlink to a file outside the input directory "
                              f"{root}: not read (--follow-symlinks reads it)" if outside else None))
    for parts, path, error in sorted(found):
        rid = "/".join(parts) or root
        yield Record(id=rid, error=error) if error else read_article(path, rid, max_bytes)


def _rel_parts(path: str, root: str) -> tuple[str, ...]:
    return Path(os.path.relpath(path, root)).parts


def _is_within(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


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
    footers etc. are kept (inference.model.prose decides what is prose); blocks are never merged. An unclosed
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
            line = line.removeprefix(BOM)
        yield jsonl_record(line, where, max_bytes, f"line {lineno}: ")


def jsonl_record(line: bytes | str, where: str | None, max_bytes: int, prefix: str = "") -> Record:
    """The Record of one JSONL line; `where` keys it when it has no usable id, `prefix` starts the
    message of a line that is not a JSON object."""
    try:
        row = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
    except UnicodeDecodeError:
        return Record(id=where, error=f"{prefix}not UTF-8 text")
    except ValueError as e:  # JSONDecodeError, or a number over Python's int-string conversion limit
        return Record(id=where, error=f"{prefix}malformed JSON: {getattr(e, 'msg', e)}")
    except RecursionError:  # the C decoder recurses once per nesting level
        return Record(id=where, error=f"{prefix}malformed JSON: nested too deeply")
    if not isinstance(row, dict):
        return Record(id=where, error=f"{prefix}not a JSON object")
    return make_record(row, where, max_bytes)


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
    with open(path, "rb") as f:
        rows = CsvRows(f)
        header = next(iter(rows), None)
        if header is None or header.error:
            yield Record(id=path, error=f"malformed CSV header: {header.error if header else 'empty file'}")
            return
        names = header.cells
        missing = [c for c in ("id", "text") if c not in names]
        if missing:
            yield Record(id=path, error=f"CSV has no column {', '.join(missing)} (columns: {', '.join(names)})")
            return
        rows.width = len(names)
        id_col = len(names) - 1 - names[::-1].index("id")  # the last column named id, as dict(zip()) reads it
        for row in rows:
            where = f"{path}:{row.line}"
            if row.error:  # keyed by its id when the cells read before the fault reach it, as the README promises
                rid = clean_id(row.cells[id_col]) if len(row.cells) > id_col else None
                yield Record(id=rid or where, error=f"line {row.line}: malformed CSV: {row.error}")
                continue
            values = dict(zip(names, row.cells))
            if any(_bad_unicode(v) for v in values.values()):
                yield Record(id=clean_id(values.get("id")) or where, error="not UTF-8 text")
                continue
            yield make_record(values, where, max_bytes)


class _Unclosed(Exception):
    """A quoted field runs on into a line that an earlier malformed record already ran into."""


@dataclass
class CsvRow:
    line: int              # physical line the record starts on (1-based)
    start: int             # byte offsets of the record in the stream
    end: int
    cells: list[str]       # of an error row: the cells read before the fault (all of them when too wide)
    error: str | None = None
    complete: bool = True  # False: cut short by the end of the stream (no final LF, or an open quote)


_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # a bare CR ends a line too (old Mac files), as it ends a CSV record


class CsvRows:
    """The records of a CSV byte stream (UTF-8, undecodable bytes kept as lone surrogates), in order.

    Parsing is the csv module's, strict. Text that is not CSV (a quote never closed, a stray quote)
    becomes one error row for the line it starts on, and reading carries on at the next line, so a bad
    quote costs one record, not every later one. The lines it ran on into inside its quotes are never
    again read as the inside of a quoted field: from that same state the parse would fail the same way.
    So every line is parsed at most twice: linear time. A record with more cells than `width` is an
    error row too, but a whole one (it is valid CSV). An error row keeps the cells that are readable before
    the fault (`readable_cells`), so a reader can still tell whose record it was.
    """

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._pending: list[bytes] = []  # lines read but not yet used, last first
        self.line = 0       # lines used so far
        self.pos = 0        # bytes used so far
        self.width: int | None = None
        self._closed_to = 0  # lines up to this one cannot continue a quoted field

    def _next_line(self) -> bytes | None:
        if not self._pending:
            chunk = self._stream.readline()
            if not chunk:
                return None
            if self.line == 0 and chunk.startswith(BOM):
                chunk, self.pos = chunk[len(BOM):], self.pos + len(BOM)
            self._pending = [p for p in _LONE_CR.split(chunk) if p][::-1]
        line = self._pending.pop()
        self.line += 1
        self.pos += len(line)
        return line

    def _unread(self, lines: list[bytes]) -> None:
        self._pending.extend(reversed(lines))
        self.line -= len(lines)
        self.pos -= sum(map(len, lines))

    def __iter__(self) -> Iterator[CsvRow]:
        while (first := self._next_line()) is not None:
            row = self._parse(first)
            if row.cells == [] and row.error is None:
                continue  # a blank line
            yield row

    def _parse(self, first: bytes) -> CsvRow:
        line, start = self.line, self.pos - len(first)
        taken, state = [first], {"eof": False}

        def feed():
            yield first.decode("utf-8", "surrogateescape")
            while (nxt := self._next_line()) is not None:
                taken.append(nxt)
                if self.line <= self._closed_to:
                    raise _Unclosed("quote not closed")
                yield nxt.decode("utf-8", "surrogateescape")
            state["eof"] = True

        try:
            cells = next(csv.reader(feed(), strict=True), [])
        except (csv.Error, _Unclosed) as e:
            self._closed_to = max(self._closed_to, line + len(taken) - 1)
            self._unread(taken[1:])  # carry on at the line after the first
            # a quote that ran on past its line failed because it was not closed there: say that, not where
            error = "quote not closed" if state["eof"] or len(taken) > 1 else str(e)
            cells = readable_cells(first.decode("utf-8", "surrogateescape"))
            return CsvRow(line, start, self.pos, cells, error, not state["eof"])
        # cut short: the stream ended with no final LF (a crash, even between CR and LF; or just a missing one)
        complete = taken[-1].endswith(b"\n")
        return CsvRow(line, start, self.pos, cells, self._width_error(cells), complete)

    def _width_error(self, cells: list[str]) -> str | None:
        if self.width is not None and len(cells) > self.width and any(c.strip() for c in cells[self.width:]):
            return f"{len(cells)} cells, the header has {self.width}"
        return None


def readable_cells(line: str) -> list[str]:
    """The cells at the start of `line` (the first line of a record the strict parse failed on) that are
    whole and well-formed, each followed by a comma: strict CSV reads them the same whatever comes after.

    The csv module's lenient parse reads on past the fault; a cell is kept only when the line spells it
    exactly as strict CSV would (plain, or quoted with inner quotes doubled), which the cell holding the
    fault never does: its text runs to the line's end (an open quote) or lost a quote (a stray one).
    """
    try:
        cells = next(csv.reader([line]), [])
    except csv.Error:
        return []
    readable, pos = [], 0
    for cell in cells[:-1]:  # the last cell is followed by no comma on this line
        spelled = '"' + cell.replace('"', '""') + '"' if line.startswith('"', pos) else cell
        if not line.startswith(spelled + ",", pos):
            break
        readable.append(cell)
        pos += len(spelled) + 1
    return readable


# --- validation ----------------------------------------------------------------------------------

def make_record(row: dict, where: str | None, max_bytes: int) -> Record:
    """A Record from a JSONL object or CSV row; `where` (file:line) keys records that have no id."""
    rid = clean_id(row.get("id"))
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


def clean_id(value) -> str | None:
    """An input's id as a string (an integer id as its digits), or None when it is no usable id (missing,
    blank, not a string or integer); lone surrogates spelled as backslash escapes, so it can be written."""
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
