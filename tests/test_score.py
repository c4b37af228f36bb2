"""Batch scoring end to end with a smoke-trained model from a real MLflow registry."""
import csv
import json
import os
import subprocess
import sys

import pytest

from inference import score
from inference.model.record import FIELDS
from tests.conftest import PARAGRAPHS, ROOT

CLEAN = "\n\n".join(PARAGRAPHS[:6])
SPUN = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress a 12 months in "
        "the past. Officials expect the agreement to open the border to commerce and to reinforce financial "
        "strengthen for farmers, who stocks the arena's longest land border. Researchers said counterfeit "
        "consciousness could help doctors read medical images faster.")  # a known tortured phrase: always a span
WRAPPED = ("Home | News | Sport | Weather | Business | Contact\n\nBy Jane Smith, Reuters\n\n"
           "Published 12:30 GMT, 3 March 2005\n\n" + CLEAN +
           "\n\nRelated Articles\n\nMarkets rally as rates hold\nMinister quits over row\nStorm hits coast\n\n"
           "Share this story\n\nCopyright 2005 Example News. All rights reserved.")


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "articles" / "sub").mkdir(parents=True)
    (d / "articles" / "a.txt").write_text(CLEAN)
    (d / "articles" / "sub" / "b.md").write_text(SPUN)
    (d / "articles" / "c.html").write_text(f"<html><head><title>T</title><script>var x=1;</script></head><body>"
                                           f"<p>{PARAGRAPHS[0]}</p><p>{PARAGRAPHS[1]}</p></body></html>")
    (d / "articles" / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me is served on the terrace today.".encode("latin-1"))
    (d / "articles" / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (d / "articles" / "empty.txt").write_text("  \n")
    (d / "articles" / "huge.txt").write_text("word " * 1_100_000)  # 5.5 MB
    lines = [json.dumps({"id": "j1", "text": SPUN}), "{broken json", json.dumps({"text": "no id here at all"}),
             json.dumps({"id": "j4", "text": ""}), json.dumps({"id": "j5", "text": CLEAN, "title": "t"})]
    (d / "batch.jsonl").write_text("\n".join(lines) + "\n")
    with open(d / "batch.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([["c1", SPUN], ["c2", CLEAN], ["c3", WRAPPED]])
    return d


@pytest.fixture(scope="module")
def scored(smoke_run, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "out.jsonl"
    summary = score.run([str(inputs / "articles"), str(inputs / "batch.jsonl"), str(inputs / "batch.csv")],
                        str(out), "models:/unspin@champion", progress=False)
    return summary, read_jsonl(out)


def test_one_record_per_input_in_order_with_errors(scored):
    summary, recs = scored
    ids = [r["id"] for r in recs]
    assert ids[:7] == ["a.txt", "binary.txt", "c.html", "empty.txt", "huge.txt", "latin1.txt", "sub/b.md"]
    assert ids[7] == "j1" and ids[8].endswith("batch.jsonl:2") and ids[9].endswith("batch.jsonl:3")
    assert ids[10:12] == ["j4", "j5"]
    assert ids[-3:] == ["c1", "c2", "c3"] and len(recs) == 15 == summary["records"]
    errors = {r["id"]: r["error"] for r in recs if r["error"]}
    assert set(errors) >= {"binary.txt", "empty.txt", "huge.txt", "latin1.txt", "j4"}
    assert "UTF-8" in errors["latin1.txt"] and "binary" in errors["binary.txt"]
    assert any("line 2" in e for e in errors.values()) and any("missing id" in e for e in errors.values())
    assert summary["errors"] == len(errors) and summary["spun"] + summary["clean"] + summary["errors"] == 15
    for r in recs:
        assert set(r) == set(FIELDS)
        assert r["model"]["name"] == "unspin" and (r["error"] is None) == (r["score"] is not None)


def test_span_offsets_point_into_the_submitted_text(scored, inputs):
    _, recs = scored
    texts = {"sub/b.md": SPUN, "j1": SPUN, "c1": SPUN, "a.txt": CLEAN, "c2": CLEAN, "c3": WRAPPED, "j5": CLEAN}
    n = 0
    for r in recs:
        if r["id"] in texts:
            t = texts[r["id"]]
            for s in r["spans"]:
                assert t[s["start"]:s["end"]] == s["text"]
                n += 1
            for s in r["sentences"]:
                assert 0 <= s["start"] < s["end"] <= len(t) and 0 <= s["score"] <= 1
    assert n > 0, "the smoke model flagged no span at all in spun text"


def test_boilerplate_wrapped_copy_of_clean_article_is_not_flagged(scored):
    _, recs = scored
    by_id = {r["id"]: r for r in recs}
    plain, wrapped = by_id["c2"], by_id["c3"]
    assert plain["label"] == "clean" and wrapped["label"] == "clean"
    assert abs(wrapped["score"] - plain["score"]) < 0.05
    # navigation, byline, timestamp, related links and copyright are not scored as sentences
    scored_text = [WRAPPED[s["start"]:s["end"]] for s in wrapped["sentences"]]
    assert not any(x.startswith(("Home |", "By Jane", "Published", "Related", "Copyright")) for x in scored_text)


def test_csv_and_jsonl_outputs_agree(smoke_run, inputs, tmp_path):
    args = [str(inputs / "batch.csv")]
    score.run(args, str(tmp_path / "o.jsonl"), "models:/unspin@champion", progress=False)
    score.run(args, str(tmp_path / "o.csv"), "models:/unspin@champion", progress=False)
    js = read_jsonl(tmp_path / "o.jsonl")
    with open(tmp_path / "o.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [r["id"] for r in js]
    for c, j in zip(rows, js):
        assert c["label"] == j["label"] and abs(float(c["score"]) - j["score"]) < 1e-9
        assert int(c["n_spans"]) == len(j["spans"])


def test_resume_skips_ids_already_scored(smoke_run, inputs, tmp_path):
    out = tmp_path / "o.jsonl"
    first = score.run([str(inputs / "batch.csv")], str(out), "models:/unspin@champion", progress=False)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:20])  # a crash after one record and half a line
    again = score.run([str(inputs / "batch.csv")], str(out), "models:/unspin@champion", resume=True, progress=False)
    recs = read_jsonl(out)
    assert first["records"] == 3 and again["skipped"] == 1 and again["records"] == 2
    assert [r["id"] for r in recs] == ["c1", "c2", "c3"]


def test_cli_stdin_to_stdout_threshold_override_and_exit_status(smoke_run, tmp_path):
    env = dict(os.environ)
    lines = "\n".join(json.dumps({"id": f"s{i}", "text": t}) for i, t in enumerate([SPUN, CLEAN])) + "\n{oops\n"
    proc = subprocess.run([sys.executable, "-m", "inference.score", "-", "--output", "-", "--threshold", "0",
                           "--quiet"], input=lines, capture_output=True, check=False, text=True, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["id"] for r in recs][:2] == ["s0", "s1"] and len(recs) == 3 and recs[2]["error"]
    assert all(r["label"] == "spun" and r["threshold"] == 0 for r in recs[:2])
    assert "3 records" in proc.stderr and "articles/s" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "inference.score", "-", "--output", str(tmp_path / "x.jsonl"),
                          "--model", str(tmp_path / "no-such-model")], input="", capture_output=True,
                         check=False, text=True, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "no-such-model" in bad.stderr
    typo = subprocess.run([sys.executable, "-m", "inference.score", "-", "--output", "-", "--set", "thresold=0"],
                          input="", capture_output=True, check=False, text=True, cwd=ROOT, env=env)
    assert typo.returncode == 2 and "inference.yaml.thresold: unknown key" in typo.stderr
