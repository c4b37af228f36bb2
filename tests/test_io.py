"""Batch inputs (inference.io.inputs), score outputs (inference.io.outputs) and the prose filter
(inference.model.prose)."""
import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from data.text import sentences
from inference.io.inputs import html_to_text, iter_records
from inference.io.outputs import CSV_COLUMNS, id_key, open_writer, output_format, read_answered
from inference.model.prose import ProseRules, explain, prose_mask
from tests.conftest import PARAGRAPHS

MAX = 2000
GOOD = PARAGRAPHS[0]


def jl(obj) -> str:
    return json.dumps(obj) + "\n"


def by_id(records):
    return {r.id: r for r in records}


# --- inputs --------------------------------------------------------------------------------------

def test_every_bad_input_gives_one_error_record_and_the_batch_goes_on(tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        jl({"id": "a", "text": GOOD, "title": "Talks"})
        + "{not json\n"                                   # line 2: malformed
        + "\n"                                            # blank: no record
        + jl(["a", "list"])                               # line 4: not an object
        + jl({"text": GOOD})                              # line 5: no id
        + jl({"id": "", "text": GOOD})                    # line 6: empty id
        + jl({"id": "no-text"})
        + jl({"id": "num-text", "text": 12345})
        + jl({"id": "big", "text": "word " * 1000})      # 5000 bytes > MAX
        + jl({"id": "blank", "text": "  \n\t "})
        + jl({"id": "b", "text": PARAGRAPHS[1]})
    )
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 society is back in fashion, the critics said.".encode("latin-1"))
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "huge.txt").write_text("word " * 1000)
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "ok.txt").write_text(PARAGRAPHS[2])
    rows = tmp_path / "rows.csv"
    with open(rows, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "title"])
        w.writerow(["c1", PARAGRAPHS[3], "Shares"])
        w.writerow(["", PARAGRAPHS[4], ""])
        w.writerow(["c3", "", ""])
        w.writerow(["c4", PARAGRAPHS[5], ""])
    missing = str(tmp_path / "nowhere.jsonl")
    p = lambda name: str(tmp_path / name)
    inputs = [str(batch), p("latin1.txt"), p("image.txt"), p("huge.txt"), p("report.pdf"), missing,
              p("ok.txt"), str(rows)]

    records = list(iter_records(inputs, max_bytes=MAX))

    assert [r.id for r in records] == [
        "a", f"{batch}:2", f"{batch}:4", f"{batch}:5", f"{batch}:6", "no-text", "num-text", "big", "blank", "b",
        p("latin1.txt"), p("image.txt"), p("huge.txt"), p("report.pdf"), missing, p("ok.txt"),
        "c1", f"{rows}:3", "c3", "c4"]
    errors = {r.id: r.error for r in records}
    assert "line 2" in errors[f"{batch}:2"] and "malformed" in errors[f"{batch}:2"]
    assert "not a JSON object" in errors[f"{batch}:4"]
    assert errors[f"{batch}:5"] == errors[f"{batch}:6"] == errors[f"{rows}:3"] == "missing id"
    assert "text" in errors["no-text"] and "not a string" in errors["num-text"]
    assert "5000" in errors["big"] and str(MAX) in errors["big"]
    assert errors["blank"] == errors["c3"] == "empty text"
    assert errors[p("latin1.txt")] == "not UTF-8 text"
    assert errors[p("image.txt")] == "binary file"
    assert "5000" in errors[p("huge.txt")] and str(MAX) in errors[p("huge.txt")]
    assert ".pdf" in errors[p("report.pdf")]
    assert "nowhere.jsonl" in errors[missing]
    good = {"a", "b", p("ok.txt"), "c1", "c4"}
    for r in records:
        assert (r.error is None) == (r.id in good), r
        assert (r.text is not None) == (r.id in good), r
    got = by_id(records)
    assert got["a"].text == GOOD and got["a"].title == "Talks"
    assert got["c1"].text == PARAGRAPHS[3] and got["c1"].title == "Shares" and got["c4"].title is None


def test_directory_is_read_recursively_in_sorted_order_with_relative_ids(tmp_path):
    root = tmp_path / "site"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "b" / "deep" / "z.md").write_text(PARAGRAPHS[0])
    (root / "b" / "2.htm").write_text(f"<p>{PARAGRAPHS[1]}</p>")
    (root / "a" / "1.txt").write_text(PARAGRAPHS[2])
    (root / "c.html").write_text(f"<p>{PARAGRAPHS[3]}</p>")
    (root / "notes.docx").write_bytes(b"PK\x03\x04")       # unsupported: skipped silently
    (root / "data.jsonl").write_text(jl({"id": "x", "text": GOOD}))  # not an article file either
    (root / ".hidden.txt").write_text(PARAGRAPHS[4])

    records = list(iter_records([str(root)], max_bytes=MAX))

    assert [r.id for r in records] == ["a/1.txt", "b/2.htm", "b/deep/z.md", "c.html"]
    assert all(r.error is None for r in records)
    assert records[1].text == PARAGRAPHS[1] and records[2].text == PARAGRAPHS[0]


def test_a_bad_csv_row_is_keyed_by_the_id_column_when_the_cells_before_the_fault_reach_it(tmp_path):
    path = tmp_path / "text-first.csv"  # the id column is found by name, here the second
    path.write_text(f'text,id,title\n"{GOOD}",a1,T\n"{GOOD}",a2,"never closed\n"never closed, a3\n'
                    f'{GOOD.replace(",", "")},a4,T,extra\n"{GOOD}","a""5","x"y\n"{GOOD}","a6\n')
    records = list(iter_records([str(path)], max_bytes=MAX))
    # a3's id comes after the open quote and a6's id cell is the one left open: no readable id, file:line
    assert [r.id for r in records] == ["a1", "a2", f"{path}:4", "a4", 'a"5', f"{path}:7"]
    assert [r.error is None for r in records] == [True, False, False, False, False, False]
    assert records[1].error == "line 3: malformed CSV: quote not closed" and records[1].text is None
    assert records[3].error == "line 5: malformed CSV: 4 cells, the header has 3"
    assert records[4].error.startswith("line 6: malformed CSV: ")  # a stray quote after the id cell


def test_directory_symlinks_out_of_the_tree_get_an_error_record_unless_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "dir").mkdir(parents=True)
    (elsewhere / "secret.txt").write_text(PARAGRAPHS[0])
    (elsewhere / "dir" / "more.txt").write_text(PARAGRAPHS[1])
    (elsewhere / "hop.txt").symlink_to(elsewhere / "secret.txt")
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(PARAGRAPHS[2])
    (root / "sub" / "inside.txt").symlink_to(root / "a.txt")      # stays in the tree: read
    (root / "sub" / "up.txt").symlink_to("../a.txt")               # relative, still inside: read
    (root / "out.txt").symlink_to(elsewhere / "secret.txt")
    (root / "sub" / "chain.md").symlink_to(elsewhere / "hop.txt")  # out through another link
    (root / "rel.txt").symlink_to("../elsewhere/secret.txt")
    (root / "linked").symlink_to(elsewhere / "dir")                # a directory link: never descended
    (root / "gone.txt").symlink_to(elsewhere / "nowhere.txt")      # dangling: not a file, skipped

    records = list(iter_records([str(root)], max_bytes=MAX))
    assert [r.id for r in records] == ["a.txt", "out.txt", "rel.txt", "sub/chain.md", "sub/inside.txt", "sub/up.txt"]
    got = by_id(records)
    for rid in ("out.txt", "rel.txt", "sub/chain.md"):
        assert got[rid].text is None and "symlink to a file outside the input directory" in got[rid].error
        assert "--follow-symlinks" in got[rid].error
    assert got["sub/inside.txt"].text == got["sub/up.txt"].text == PARAGRAPHS[2]
    assert not any(PARAGRAPHS[0] in (r.text or "") for r in records)

    followed = list(iter_records([str(root)], max_bytes=MAX, follow_symlinks=True))
    assert [r.id for r in followed] == [r.id for r in records] and all(r.error is None for r in followed)
    assert by_id(followed)["out.txt"].text == by_id(followed)["sub/chain.md"].text == PARAGRAPHS[0]

    via_link = tmp_path / "site-link"  # the directory named through a link: its own files are still inside
    via_link.symlink_to(root)
    assert [r.error is None for r in iter_records([str(via_link)], max_bytes=MAX)] == [
        r.error is None for r in records]


def test_stdin_is_read_as_jsonl():
    stdin = io.BytesIO((jl({"id": "s1", "text": GOOD}) + "oops\n" + jl({"id": "s2", "text": GOOD})).encode())
    records = list(iter_records(["-"], max_bytes=MAX, stdin=stdin))
    assert [r.id for r in records] == ["s1", "<stdin>:2", "s2"]
    assert records[1].error and records[0].text == GOOD


def test_overlong_jsonl_line_is_one_error_and_reading_continues(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_text(jl({"id": "huge", "text": "x" * 200_000}) + jl({"id": "big", "text": "x" * 2000})
                    + jl({"id": "next", "text": GOOD}))
    records = list(iter_records([str(path)], max_bytes=1000))
    assert [r.id for r in records] == [f"{path}:1", "big", "next"]  # no id is parsed from a skipped line
    assert "line 1 is 200" in records[0].error and "over the limit" in records[0].error
    assert "2000" in records[1].error and records[2].error is None


HTML = """<!doctype html>
<html><head><title>Talks make progress - Example News</title>
<style>p { color: red }</style><script>var tracking = "do not keep";</script></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li></ul></nav>
<article>
  <h1>Talks with neighbour   make good progress</h1>
  <p>The foreign minister said on Monday that talks with the
     neighbouring country had made <b>good</b> progress.</p>
  <p>Officials expect the agreement<br>to open the border.</p>
  <!-- a comment that is not text -->
  <noscript>Please enable JavaScript</noscript>
  <table><tr><td>Exports</td><td>rose</td></tr></table>
</article>
<footer>Copyright 2005 Example News</footer>
</body></html>"""


def test_html_is_reduced_to_paragraph_blocks_without_scripts():
    text, title = html_to_text(HTML)
    assert title == "Talks make progress - Example News"
    assert text.split("\n\n") == [
        "Home", "News",
        "Talks with neighbour make good progress",
        "The foreign minister said on Monday that talks with the neighbouring country had made good progress.",
        "Officials expect the agreement", "to open the border.",
        "Exports rose",
        "Copyright 2005 Example News",
    ]
    for dropped in ("tracking", "color", "comment", "JavaScript", "Example News</"):
        assert dropped not in text


def test_html_file_record_has_text_and_title(tmp_path):
    (tmp_path / "page.html").write_text(HTML)
    (tmp_path / "empty.html").write_text("<html><script>only()</script></html>")
    records = list(iter_records([str(tmp_path / "page.html"), str(tmp_path / "empty.html")], max_bytes=10_000))
    assert records[0].error is None and records[0].title.startswith("Talks")
    assert "foreign minister" in records[0].text and "tracking" not in records[0].text
    assert records[1].error == "empty text"


# --- outputs -------------------------------------------------------------------------------------

def score_record(i: int, spans: int = 2, error=None) -> dict:
    return {
        "id": f"doc-{i}", "score": 0.25 + i / 10, "label": "spun" if i % 2 else "clean", "threshold": 0.5,
        "model": {"name": "unspin-tagger", "version": "3"},
        "sentences": [{"start": 0, "end": 40, "score": 0.7}],
        "spans": [{"start": k, "end": k + 5, "text": f"w{k}\nx", "score": k / 10, "suggestion": f"s{k}"}
                  for k in range(spans)],
        "error": error,
    }


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_and_jsonl_writers_hold_the_same_records(tmp_path):
    records = [score_record(0), score_record(1, spans=7), score_record(2, spans=0, error="empty text")]
    for suffix in ("jsonl", "csv"):
        with open_writer(str(tmp_path / f"out.{suffix}"), resume=False) as w:
            for r in records:
                w.write(r)
    assert read_jsonl(tmp_path / "out.jsonl") == records
    rows = read_csv(tmp_path / "out.csv")
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(records)
    for row, rec in zip(rows, records):
        assert row["id"] == rec["id"] and float(row["score"]) == rec["score"] and row["label"] == rec["label"]
        assert float(row["threshold"]) == rec["threshold"] and row["model"] == "unspin-tagger/3"
        assert int(row["n_spans"]) == len(rec["spans"]) and row["error"] == (rec["error"] or "")
    top = rows[1]["top_spans"].split(" | ")
    assert top[0] == "w6\nx -> s6" and len(top) == 5  # highest scores first, line breaks kept (quoted)
    assert rows[2]["top_spans"] == ""
    assert not list(tmp_path.glob(".*.tmp"))


def test_stdout_writer_prints_jsonl(capsys):
    with open_writer("-", resume=False) as w:
        w.write(score_record(1))
    assert json.loads(capsys.readouterr().out) == score_record(1)


def test_unknown_output_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="jsonl"):
        open_writer(str(tmp_path / "out.txt"), resume=False)


def answered(path) -> Counter:
    return read_answered(str(path), output_format(str(path)))[0]


def keys(*ids) -> Counter:
    return Counter(id_key(i) for i in ids)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_resume_appends_and_counts_earlier_records(tmp_path, suffix):
    out = str(tmp_path / f"out.{suffix}")
    with open_writer(out, resume=False) as w:
        w.write(score_record(0))
        w.write(score_record(1))
    assert answered(out) == keys("doc-0", "doc-1")
    with open_writer(out, resume=True) as w:
        assert w.answered == keys("doc-0", "doc-1")
        w.write(score_record(2))
        w.write(score_record(2))
    assert answered(out) == keys("doc-0", "doc-1", "doc-2", "doc-2")
    ids = [r["id"] for r in (read_jsonl(out) if suffix == "jsonl" else read_csv(out))]
    assert ids == ["doc-0", "doc-1", "doc-2", "doc-2"]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
@pytest.mark.parametrize("cut", ["final line break", "mid-record", "after a line break inside a cell"])
def test_cut_off_last_record_is_not_counted_and_dropped_on_resume(tmp_path, suffix, cut):
    out = str(tmp_path / f"out.{suffix}")
    with open_writer(out, resume=False) as w:
        w.write(score_record(0))
        w.write(score_record(1))
    data = Path(out).read_bytes()
    # a crash in the middle of writing doc-1; its top spans hold line breaks ("w1\nx"), quoted in CSV
    end = {"final line break": len(data) - 1, "mid-record": len(data) - 20,
           "after a line break inside a cell": data.rfind(b"\n", 0, len(data) - 1) + 1}[cut]
    Path(out).write_bytes(data[:end])
    assert answered(out) == keys("doc-0")
    with open_writer(out, resume=True) as w:
        w.write(score_record(1))
    assert answered(out) == keys("doc-0", "doc-1")
    assert Path(out).read_bytes() == data


def test_a_crash_keeps_every_record_written_so_far_for_resume(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(jl(score_record(9)))
    with pytest.raises(RuntimeError), open_writer(str(out), resume=False) as w:
        w.write(score_record(0))
        w.write(score_record(1))
        raise RuntimeError("model crashed")
    assert read_jsonl(out) == [score_record(0), score_record(1)]  # a fresh run replaced the old file
    assert answered(out) == keys("doc-0", "doc-1")
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"]


# --- prose ---------------------------------------------------------------------------------------

ARTICLE = """Home | News | Sport | Weather | Contact

World  Europe  Politics

Talks with neighbour make good progress, minister says

By John Smith, Reuters

Published 12:30 GMT, 3 March 2005

The foreign minister said on Monday that talks with the neighbouring country had made good progress. \
Officials expect the agreement to open the border to trade and to strengthen economic support for farmers.

By Monday, officials expect the deal to be signed in the capital, Mr. Jones told reporters.

Share this article

Related Articles
Talks stall as border row deepens in the north
Minister resigns over trade deal with neighbours

Advertisement

The company reported a sharp rise in quarterly profits, helped by strong sales of its new phones.
Analysts had expected a smaller increase, and shares rose five percent in early trading.

Most Read

Government unveils plan to build thousands of new homes

Fans celebrate as team wins final after a late goal

Updated: 2024-01-02

© 2005 Example News Ltd. All rights reserved.

We use cookies to give you the best experience on our website. Sign up for our newsletter.
Home
News
Sport
Weather
Contact

The director told reporters that the story was inspired by her own childhood, and that
the film had been shot over three summers in the small town where she grew
up with her grandparents.
"""

PROSE = [
    "The foreign minister said on Monday that talks with the neighbouring country had made good progress.",
    "Officials expect the agreement to open the border to trade and to strengthen economic support for farmers.",
    "By Monday, officials expect the deal to be signed in the capital, Mr. Jones told reporters.",
    "The company reported a sharp rise in quarterly profits, helped by strong sales of its new phones.",
    "Analysts had expected a smaller increase, and shares rose five percent in early trading.",
    ("The director told reporters that the story was inspired by her own childhood, and that\n"
     "the film had been shot over three summers in the small town where she grew\nup with her grandparents."),
]


def test_prose_mask_keeps_news_sentences_and_drops_page_furniture():
    spans = sentences(ARTICLE)
    mask = prose_mask(ARTICLE, spans)
    assert len(mask) == len(spans)
    kept = [ARTICLE[s:e] for (s, e), keep in zip(spans, mask) if keep]
    assert kept == PROSE
    reasons = {ARTICLE[s:e].split("\n")[0]: r for (s, e), r in zip(spans, explain(ARTICLE, spans))}
    assert reasons["Home | News | Sport | Weather | Contact"] == "navigation"
    assert reasons["World  Europe  Politics"] == "title_case"
    assert reasons["By John Smith, Reuters"] == "byline"
    assert reasons["Published 12:30 GMT, 3 March 2005"] == "timestamp"
    assert reasons["Updated: 2024-01-02"] == "timestamp"
    assert reasons["Related Articles"] in ("boilerplate", "headline")
    assert reasons["Government unveils plan to build thousands of new homes"] == "headline_list"
    assert reasons["© 2005 Example News Ltd. All rights reserved."] == "copyright"
    assert reasons["We use cookies to give you the best experience on our website."] == "boilerplate"


@pytest.mark.parametrize("line", [
    "Home | News | Sport | Contact",
    "Home » World » Europe",
    "News Sport Weather iPlayer Sounds",
    "By John Smith",
    "By John Smith and Jane Doe, BBC News",
    "Reporting by John Smith; Editing by Jane Doe",
    "Published 12:30 GMT, 3 March 2005",
    "Monday, 3 March 2005, 12:30 GMT",
    "Updated: 2024-01-02T10:15:00Z",
    "Related Articles",
    "Read more",
    "Share this",
    "ADVERTISEMENT",
    "Subscribe to our newsletter",
    "Sign up for free",
    "This website uses cookies to improve your experience and we assume you agree.",
    "Copyright 2024 Example Media Group. All rights reserved.",
    "https://www.example.com/news/world-12345",
    "Contact: newsdesk@example.com",
    "Top stories",
])
def test_boilerplate_lines_are_not_prose(line):
    assert prose_mask(line, [(0, len(line))]) == [False]


@pytest.mark.parametrize("line", [
    "The foreign minister said on Monday that talks with the neighbouring country had made good progress.",
    "By the end of the year, the company had opened twelve new stores across the north of England.",
    "Shares in the firm rose five percent after the results were published on Tuesday.",
    "More than 100 people were injured when the bridge collapsed, officials said.",
    "Subscribers to the service will pay more from March, the company said.",
    "Talks ended without agreement.",
    "THE PRIME MINISTER SAID THE GOVERNMENT WOULD NOT CHANGE COURSE.",
])
def test_real_sentences_are_prose(line):
    assert prose_mask(line, [(0, len(line))]) == [True]


def test_prose_rules_can_be_overridden():
    line = "Talks ended without agreement"  # 4 words, no full stop: a fragment by default
    assert prose_mask(line, [(0, len(line))]) == [False]
    assert prose_mask(line, [(0, len(line))], ProseRules(min_words=3)) == [True]
    rules = ProseRules(boilerplate=["^talks ended"])  # lists, as a JSON/YAML config gives them
    sentence = "Talks ended without agreement on Monday, officials said."
    assert prose_mask(sentence, [(0, len(sentence))], rules) == [False]


@pytest.mark.parametrize("line, reason", [
    # Python's Unicode \w, \s and \b, which RE2 does not have on its own.
    ("Contact: rédaction@exemple.fr", "url_email"),
    ("Home\xa0|\xa0News\xa0|\xa0Sport\u2009|\u2009Weather", "navigation"),
    ("By José Pérez\u00a0and Zoë Smith", "byline"),
    ("We accept cookies\u2009and our privacy policy applies to this page.", "boilerplate"),
    ("The bakery sold cookiesé and policy pamphlets to visitors on Monday morning.", None),  # no word boundary
    ("Published ١٢:٣٠ GMT, 3 March 2005", "timestamp"),  # Arabic-Indic digits are digits
])
def test_prose_rules_read_unicode_as_python_does(line, reason):
    from inference.model.prose import line_reason

    assert line_reason(line) == reason


def test_html_too_deep_to_follow_is_an_error_not_a_truncated_page(tmp_path):
    from inference.io.inputs import HtmlError

    deep = "<div>" * 5000 + "lost" + "</div>" * 5000 + "<p>after</p>"
    with pytest.raises(HtmlError, match="depth"):
        html_to_text(deep)
    (tmp_path / "deep.html").write_text(deep)
    [record] = iter_records([str(tmp_path / "deep.html")], max_bytes=100_000)
    assert record.text is None and "depth" in record.error
    assert html_to_text("<div>" * 1000 + "kept" + "</div>" * 1000)[0] == "kept"


def test_unclosed_title_reads_its_markup_as_the_page():
    text, title = html_to_text("<html><head><title>Talks<body><p>One.</p><p>Two.</p>")
    assert text.split("\n\n") == ["Talks", "One.", "Two."] and title is None
    assert html_to_text("<title>Using &lt;/p&gt; tags</title><p>Body.</p>") == ("Body.", "Using </p> tags")
