"""The batch loop (inference.io.batch) and its readers and writers lose nothing: one output record per input
record, in input order, ids kept exactly, for any input, and --resume after a crash ends where an
uninterrupted run ends. Property-based (hypothesis) over generated good and bad records, with the
smoke-trained baseline model (cheap to score, deterministic, so outputs can be compared byte for byte), and
again, on fewer examples, with the default model in its default mode (thorough: the language model reads every
sentence; a text's record does not depend on its batch, so resumed outputs compare byte for byte too)."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference import match
from inference.io.inputs import CsvRows, iter_records
from inference.io.outputs import FORMULA_STARTS, check_not_an_input, unneutralise
from inference.score import score_files
from tests.conftest import PARAGRAPHS

MAX = 3000  # max_bytes of the runs here: small, so oversized texts are cheap to make
PROPERTY = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def baseline(smoke_run):
    from inference import Detector

    return Detector.load("models:/unspin-baseline@champion")


@pytest.fixture(scope="module")
def default(smoke_run):
    """The model the commands score with when told nothing (configs/inference.yaml), in its own mode."""
    from inference import Detector

    det = Detector.load("models:/unspin@champion")
    assert det.mode == "thorough"
    return det


@pytest.fixture(scope="module", params=["baseline", "default"])
def model(request):
    return request.getfixturevalue(request.param)


# --- generated inputs ----------------------------------------------------------------------------
# Each generator gives items; `write_*` renders them to a file and says which (id, ok) record each must
# give, in order (None: no record, e.g. a blank line). An id of None stands for "file:line".

ODD = "\n\r\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e=+-@'\t\",; é中\u200b\x00"
ids = st.text(alphabet=st.sampled_from("abcXYZ019" + ODD), min_size=1, max_size=8).filter(lambda s: s.strip())
repeated = st.sampled_from(["dup", "=dup", "dup\nline"])  # the same ids again and again
any_id = st.one_of(ids, repeated)
texts = st.builds(lambda p, tail: p + tail, st.sampled_from(PARAGRAPHS),
                  st.text(alphabet=st.sampled_from("abc ,.\n'\"é=-"), max_size=20))
bad_texts = st.sampled_from(["", "  \n\t ", "word " * (MAX // 4), "a\x00b", 12345, None, ["a"], {"t": 1}, True])


def _escape_surrogates(s: str) -> str:
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


# JSONL ------------------------------------------------------------------------------------------

jsonl_good = st.tuples(st.just("good"), st.one_of(any_id, st.sampled_from(["\ud800x", "y\udfff"])), texts, st.booleans())
jsonl_items = st.one_of(
    jsonl_good, jsonl_good, jsonl_good, jsonl_good, jsonl_good,
    st.tuples(st.just("int-id"), st.integers(-10**30, 10**30), texts),
    st.tuples(st.just("bad-text"), any_id, bad_texts),
    st.tuples(st.just("no-id"), st.sampled_from([None, "", "  ", True, 1.5, ["x"]]), texts),
    st.tuples(st.just("raw"), st.sampled_from([
        b"{oops", b"[1, 2]", b'"just a string"', b"42", b"\xff\xfe{}", b'{"id": "u", "text": "caf\xe9"}',
        b"[" * 2_000 + b"]" * 2_000,                          # deeper than the decoder recurses
        b'{"id": "deep", "text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",  # and a line over the limit
        b'{"id": ' + b"9" * 5_000 + b', "text": "x"}',        # over Python's int-string conversion limit
    ])),
    st.tuples(st.just("blank"), st.sampled_from([b"", b"   ", b"\r"])),
)


def write_jsonl(path: Path, items) -> list:
    lines, expected = [], []
    for n, item in enumerate(items, 1):
        kind = item[0]
        if kind == "good":
            _, rid, text, ascii_only = item
            lines.append(json.dumps({"id": rid, "text": text}, ensure_ascii=ascii_only or rid != _escape_surrogates(rid)))
            expected.append((_escape_surrogates(rid), True))
        elif kind == "int-id":
            lines.append(json.dumps({"id": item[1], "text": item[2]}))
            expected.append((str(item[1]), True))
        elif kind == "bad-text":
            lines.append(json.dumps({"id": item[1], "text": item[2]}))
            expected.append((item[1], False))
        elif kind == "no-id":
            lines.append(json.dumps({"id": item[1], "text": item[2]}))
            expected.append((f"{path}:{n}", False))
        elif kind == "raw":
            lines.append(item[1])
            expected.append((f"{path}:{n}", False))
        else:
            lines.append(item[1])
            expected.append(None)
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode("utf-8") for x in lines) + b"\n")
    return expected


# CSV --------------------------------------------------------------------------------------------
# A later quote can legally close an earlier unclosed one, so which records a file holds after an
# unclosed quote depends on what follows. Cells here never start with a quote, comma or line break, so
# any quoted cell after an unclosed quote breaks the parse right there: the records are then known.

def _csv_safe(s: str) -> bool:
    return not s.startswith(('"', ",", "\r", "\n")) and "\x00" not in s


csv_ids = any_id.filter(_csv_safe)
plain = st.text(alphabet=st.sampled_from("abcxyz019_"), min_size=1, max_size=6)
csv_good = st.tuples(st.just("good"), csv_ids, texts.filter(_csv_safe))
csv_items = st.one_of(
    csv_good, csv_good, csv_good, csv_good, csv_good,
    st.tuples(st.just("bad-text"), csv_ids, st.sampled_from(["", "  ", "word " * (MAX // 4), "a\x00b"])),
    st.tuples(st.just("no-id"), st.sampled_from(["", "  "]), texts),
    st.tuples(st.just("short"), csv_ids),
    st.tuples(st.just("wide"), csv_ids, texts.filter(_csv_safe)),
    st.tuples(st.just("unclosed"), plain, st.sampled_from(PARAGRAPHS)),
    st.tuples(st.just("latin1"), plain),
    st.tuples(st.just("blank"),),
)


def write_csv(path: Path, items, crlf: bool) -> list:
    out, expected = io.BytesIO(), []
    eol = "\r\n" if crlf else "\n"

    def row(cells):
        # Python's csv writer quotes a bare CR only when CR is in its line end: quote all then, as CSV must
        quoting = csv.QUOTE_ALL if not crlf and any("\r" in c for c in cells) else csv.QUOTE_MINIMAL
        buf = io.StringIO()
        csv.writer(buf, lineterminator=eol, quoting=quoting).writerow(cells)
        return buf.getvalue().encode("utf-8")

    out.write(row(["id", "text"]))
    for item in items:
        line = out.getvalue().replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        kind = item[0]
        if kind in ("good", "bad-text", "short", "wide"):  # a bad row whose id is readable keeps it
            out.write(row(item[1:] + ("extra",) if kind == "wide" else item[1:]))
            expected.append((item[1], kind == "good"))
        elif kind == "no-id":
            out.write(row(item[1:]))
            expected.append((f"{path}:{line}", False))
        elif kind == "unclosed":
            out.write(f'{item[1]},"{item[2]}{eol}'.encode())
            expected.append((item[1], False))
        elif kind == "latin1":
            out.write(f"{item[1]},caf\xe9 au lait{eol}".encode("latin-1"))
            expected.append((item[1], False))
        else:
            out.write(eol.encode())
            expected.append(None)
    path.write_bytes(out.getvalue())
    return expected


# Directories ------------------------------------------------------------------------------------

names = st.text(alphabet=st.sampled_from("abcXYZ019 =+-@',é\n\r\u2028"), min_size=1, max_size=8)
file_kinds = st.sampled_from(["good", "html", "empty", "binary", "latin1", "big"])
dir_items = st.lists(st.tuples(names, st.sampled_from([".txt", ".md", ".html"]), file_kinds),
                     max_size=5, unique_by=lambda t: t[0] + t[1])


def write_dir(path: Path, items) -> list:
    path.mkdir()
    content = {"good": PARAGRAPHS[0].encode(), "html": f"<p>{PARAGRAPHS[1]}</p>".encode(), "empty": b" \n",
               "binary": bytes(range(256)), "latin1": "caf\xe9".encode("latin-1"), "big": b"word " * MAX}
    for name, ext, kind in items:
        (path / (name + ext)).write_bytes(content[kind])
    return [(name + ext, kind in ("good", "html")) for name, ext, kind in sorted(items, key=lambda t: t[0] + t[1])]


sources = st.lists(st.one_of(
    st.tuples(st.just("jsonl"), st.lists(jsonl_items, min_size=1, max_size=12)),
    st.tuples(st.just("csv"), st.lists(csv_items, min_size=1, max_size=12), st.booleans()),
    st.tuples(st.just("dir"), dir_items),
    st.tuples(st.just("missing"),),
), min_size=1, max_size=3)


def write_sources(root: Path, drawn) -> tuple[list[str], list]:
    paths, expected = [], []
    for i, (kind, *rest) in enumerate(drawn):
        path = root / f"in{i}.{kind}"
        if kind == "jsonl":
            expected += write_jsonl(path, rest[0])
        elif kind == "csv":
            expected += write_csv(path, rest[0], rest[1])
        elif kind == "dir":
            expected += write_dir(path, rest[0])
        else:
            expected.append((str(path), False))
        paths.append(str(path))
    return paths, [e for e in expected if e is not None]


# --- reading outputs back ------------------------------------------------------------------------

def read_output(path: Path) -> list[tuple[str, bool]]:
    if path.suffix == ".jsonl":
        return [(r["id"], r["error"] is None) for r in map(json.loads, path.read_bytes().splitlines())]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "id"
    for cells in rows[1:]:  # no cell a spreadsheet would run as a formula
        assert all(not c.startswith(FORMULA_STARTS) or c.startswith("'") for c in cells), cells
    return [(unneutralise(c[0]), c[7] == "") for c in rows[1:]]


def record_ends(path: Path) -> list[int]:
    """Byte offset after the header (CSV) and after each record."""
    with open(path, "rb") as f:
        if path.suffix == ".csv":
            return [row.end for row in CsvRows(f)]
        ends, pos = [0], 0
        for line in f:
            pos += len(line)
            ends.append(pos)
        return ends


# --- properties ----------------------------------------------------------------------------------

def one_record_per_input_and_exact_resume(det, drawn, fmt, data):
    with tempfile.TemporaryDirectory() as tmp:
        paths, expected = write_sources(Path(tmp), drawn)
        out = Path(tmp) / f"out.{fmt}"
        first = score_files(det, paths, str(out), batch_size=3, max_bytes=MAX, progress=False)
        assert read_output(out) == expected
        assert first["records"] == len(expected) and first["errors"] == sum(not ok for _, ok in expected)
        if not data.draw(st.booleans(), label="crash"):
            return
        full, ends = out.read_bytes(), record_ends(out)
        k = data.draw(st.integers(0, len(ends) - 1), label="records written whole")
        cut = ends[k] + (data.draw(st.integers(0, ends[k + 1] - ends[k] - 1), label="bytes of the next")
                         if k + 1 < len(ends) else 0)
        out.write_bytes(full[:cut])  # a crash while writing record k + 1
        again = score_files(det, paths, str(out), resume=True, batch_size=2, max_bytes=MAX, progress=False)
        assert out.read_bytes() == full
        assert again["skipped"] == k and again["records"] == len(expected) - k


@PROPERTY
@given(drawn=sources, fmt=st.sampled_from(["jsonl", "csv"]), data=st.data())
def test_one_record_per_input_in_order_and_resume_after_a_crash_is_exact(baseline, drawn, fmt, data):
    one_record_per_input_and_exact_resume(baseline, drawn, fmt, data)


@settings(PROPERTY, max_examples=5)  # the language model reads every text: a few inputs, each a few dozen records
@given(drawn=sources, fmt=st.sampled_from(["jsonl", "csv"]), data=st.data())
def test_the_same_with_the_default_model(default, drawn, fmt, data):
    one_record_per_input_and_exact_resume(default, drawn, fmt, data)


# --- examples ------------------------------------------------------------------------------------

def test_an_unclosed_quote_costs_one_record_not_the_rest_of_the_file(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(f'id,text\nr1,"{PARAGRAPHS[0]}"\nr2,"unclosed {PARAGRAPHS[1]}\nr3,{PARAGRAPHS[2].replace(",", "")}\n'
                    f'r4,"{PARAGRAPHS[3]}"\n')
    records = list(iter_records([str(path)], MAX))
    assert [r.id for r in records] == ["r1", "r2", "r3", "r4"]
    assert "line 3" in records[1].error and "quote" in records[1].error and records[1].text is None
    assert [r.text for r in records if r.error is None] == [PARAGRAPHS[0], PARAGRAPHS[2].replace(",", ""), PARAGRAPHS[3]]


def test_a_bad_csv_row_keeps_a_readable_id_and_resume_over_such_rows_is_exact(model, tmp_path):
    """A row with too many cells, or whose quote breaks after its id cell, is keyed by its id; one whose id
    cell is itself broken (or blank) by file:line. A run cut short after any record resumes to the same output."""
    path = tmp_path / "in.csv"
    flat = [p.replace(",", "") for p in PARAGRAPHS]
    path.write_text(f'id,text\nr1,"{PARAGRAPHS[0]}"\nc2,"never closed {flat[1]}\nr3,{flat[2]}\n'
                    f'w4,{flat[3]},extra cell\n"bad"id,{flat[4]}\n,"unclosed and no id\nr8,"{PARAGRAPHS[5]}"\n')
    records = list(iter_records([str(path)], MAX))
    assert [r.id for r in records] == ["r1", "c2", "r3", "w4", f"{path}:6", f"{path}:7", "r8"]
    errors = [r.error for r in records]
    assert errors[0] is errors[2] is errors[6] is None
    assert "line 3: malformed CSV: quote not closed" == errors[1] and "line 5: malformed CSV: 3 cells" in errors[3]
    assert "line 6: malformed CSV" in errors[4] and "line 7: malformed CSV: quote not closed" == errors[5]
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"out.{fmt}"
        score_files(model, [str(path)], str(out), max_bytes=MAX, progress=False)
        assert read_output(out) == [(r.id, r.error is None) for r in records]
        full, ends = out.read_bytes(), record_ends(out)
        for k in range(len(ends)):
            out.write_bytes(full[:ends[k]] + full[ends[k]:][:7])  # k records whole, then a crash mid-record
            again = score_files(model, [str(path)], str(out), resume=True, max_bytes=MAX, progress=False)
            assert out.read_bytes() == full, (fmt, k)
            assert again["skipped"] == k and again["records"] == len(records) - k


def test_csv_with_old_mac_line_ends_and_multiline_cells(tmp_path):
    path = tmp_path / "mac.csv"
    path.write_bytes(b'id,text\rm1,"two\rlines"\rm2,plain text here\r')
    records = list(iter_records([str(path)], MAX))
    assert [(r.id, r.text) for r in records] == [("m1", "two\rlines"), ("m2", "plain text here")]


def test_reading_csv_stays_linear_on_runs_of_unclosed_quotes(tmp_path):
    # each line opens a quote that the lines after it keep open, whether read inside quotes or not; without
    # the rule that a line a failed quote ran into cannot continue a quote again, this is quadratic
    path = tmp_path / "bad.csv"
    n = 3000
    path.write_text('id,text\n' + 'x",a,"\n' * n)
    reads = 0
    with open(path, "rb") as f:
        rows = CsvRows(f)
        original = rows._next_line

        def counting():
            nonlocal reads
            reads += 1
            return original()

        rows._next_line = counting
        assert sum(1 for row in rows if row.error) == n
    assert reads <= 3 * (n + 1)


def test_odd_ids_survive_csv_output_and_resume(model, tmp_path):
    odd = ["plain", "line\nbreak", "cr\rid", "crlf\r\nid", "ls\u2028id", "fs\x1cid", "=1+1", "+x", "-x", "@sum",
           "'quoted", "\ttab", "dup", "dup"]
    inp = tmp_path / "odd.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "text": PARAGRAPHS[0]}) + "\n" for i in odd))
    out = tmp_path / "out.csv"
    score_files(model, [str(inp)], str(out), max_bytes=MAX, progress=False)
    again = score_files(model, [str(inp)], str(out), resume=True, max_bytes=MAX, progress=False)
    assert again["skipped"] == len(odd) and again["records"] == 0
    assert [rid for rid, _ in read_output(out)] == odd
    with open(out, newline="", encoding="utf-8") as f:
        cells = [row[0] for row in csv.reader(f)][1:]
    assert cells[6:12] == ["'=1+1", "'+x", "'-x", "'@sum", "''quoted", "'\ttab"]


def test_resume_gives_each_repeated_id_its_own_record(model, tmp_path):
    inp = tmp_path / "dups.jsonl"
    ids = ["a", "b", "a", "a", "c", "b"]
    inp.write_text("".join(json.dumps({"id": i, "text": PARAGRAPHS[k]}) + "\n" for k, i in enumerate(ids)))
    out = tmp_path / "out.jsonl"
    score_files(model, [str(inp)], str(out), max_bytes=MAX, progress=False)
    full = out.read_bytes()
    out.write_bytes(b"".join(full.splitlines(keepends=True)[:3]))  # "a", "b", "a" written, then a crash
    again = score_files(model, [str(inp)], str(out), resume=True, max_bytes=MAX, progress=False)
    assert again["skipped"] == 3 and again["records"] == 3 and out.read_bytes() == full


def test_resume_refuses_an_output_it_did_not_write(model, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "text": PARAGRAPHS[0]}) + "\n")
    (tmp_path / "notes.jsonl").write_text("just some notes\n")
    (tmp_path / "other.csv").write_text("name,value\nx,1\n")
    for name in ("notes.jsonl", "other.csv"):
        with pytest.raises(ValueError, match="cannot resume"):
            score_files(model, [str(inp)], str(tmp_path / name), resume=True, max_bytes=MAX, progress=False)
    assert (tmp_path / "notes.jsonl").read_text() == "just some notes\n"


def test_an_output_that_is_an_input_is_refused_however_it_is_spelled(tmp_path, monkeypatch):
    inp = tmp_path / "in.jsonl"
    inp.write_text("{}\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link.jsonl").symlink_to(inp)
    os.link(inp, tmp_path / "hard.jsonl")
    (tmp_path / "dirlink").symlink_to(tmp_path / "dir")
    monkeypatch.chdir(tmp_path)
    for output, inputs in [(str(inp), [str(inp)]), ("link.jsonl", [str(inp)]), (str(inp), ["link.jsonl"]),
                           ("./dir/../in.jsonl", ["in.jsonl"]), ("hard.jsonl", ["in.jsonl"]),
                           ("dir/out.jsonl", ["dir"]), ("dirlink/out.jsonl", ["dir"]), ("dir/out.csv", ["dirlink/"])]:
        with pytest.raises(ValueError, match="is the input|inside the input directory"):
            check_not_an_input(output, ["-", "missing.csv", *inputs])
    check_not_an_input("out.jsonl", [str(inp), "dir", "-"])  # elsewhere: fine
    check_not_an_input("-", [str(inp)])


def test_match_resume_is_exact_with_repeated_ids(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps({"id": f"r{i}", "text": "\n\n".join(PARAGRAPHS[i:i + 3])}) + "\n"
                            for i in range(0, 9, 3)))
    inp = tmp_path / "in.jsonl"
    ids = ["q", "q", "=q", "q\nq", "q", "bad"]
    inp.write_text("".join(json.dumps({"id": i, "text": "\n\n".join(PARAGRAPHS[k % 9:k % 9 + 3])}) + "\n"
                           for k, i in enumerate(ids[:-1])) + json.dumps({"id": "bad", "text": ""}) + "\n")
    out = tmp_path / "out.jsonl"
    cfg = match.load_config(None, ["index.workers=1"])
    first = match.run([str(inp)], str(out), [str(refs)], cfg, str(tmp_path / "idx"), progress=False)
    full = out.read_bytes()
    assert [json.loads(x)["id"] for x in full.splitlines()] == ids and first["errors"] == 1
    lines = full.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]) + lines[2][:10])
    again = match.run([str(inp)], str(out), None, cfg, str(tmp_path / "idx"), resume=True, progress=False)
    assert again["skipped"] == 2 and again["records"] == 4 and out.read_bytes() == full
