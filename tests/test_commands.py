"""Every command a user runs, run as a user runs it: a subprocess, default options (progress bars on), real
files. Also what the commands refuse, and a real kill part-way followed by --resume."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import PARAGRAPHS, ROOT
from tests.servers import child_env

SPUN = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress. Researchers "
        "said counterfeit consciousness could help doctors read medical images faster.")


def command(*args, stdin: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m ARGS` from the repository root; the timeout only guards against a hang."""
    return subprocess.run([sys.executable, "-m", *map(str, args)], input=stdin, capture_output=True, text=True, check=False,
                          cwd=ROOT, env=child_env(), timeout=timeout)


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("commands")
    (d / "articles").mkdir()
    (d / "articles" / "a.txt").write_text("\n\n".join(PARAGRAPHS[:3]))
    (d / "articles" / "b.html").write_text(f"<p>{PARAGRAPHS[3]}</p><p>{PARAGRAPHS[4]}</p>")
    (d / "batch.jsonl").write_text(jsonl([{"id": "j1", "text": SPUN}, {"id": "j1", "text": PARAGRAPHS[5]}])
                                   + "{broken\n")
    with open(d / "batch.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "text"], ["=c1", PARAGRAPHS[6]], ["c\n2", PARAGRAPHS[7]]])
    (d / "refs.jsonl").write_text(jsonl({"id": f"ref{i}", "text": "\n\n".join(PARAGRAPHS[i:i + 4])}
                                        for i in range(0, 12, 4)))
    return d


def test_score_default_path_with_progress_bar(smoke_run, inputs):
    out = inputs / "scores.csv"
    proc = command("inference.score", inputs / "articles", inputs / "batch.jsonl", inputs / "batch.csv",
                   "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "article [" in proc.stderr and "7 records" in proc.stderr  # the progress bar and the summary
    with open(out, newline="", encoding="utf-8") as f:
        ids = [row["id"] for row in csv.DictReader(f)]
    assert ids[:4] == ["a.txt", "b.html", "j1", "j1"] and ids[5:] == ["'=c1", "c\n2"] and len(ids) == 7


def test_match_default_path_with_progress_bars(inputs, tmp_path):
    out = tmp_path / "matches.jsonl"
    proc = command("inference.match", "--references", inputs / "refs.jsonl", "--input", inputs / "articles",
                   inputs / "batch.jsonl", "--output", out, "--index", tmp_path / "idx")
    assert proc.returncode == 0, proc.stderr
    assert "indexing" in proc.stderr and "matching" in proc.stderr and "5 records" in proc.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in recs][:4] == ["a.txt", "b.html", "j1", "j1"] and len(recs) == 5
    assert [r["error"] is None for r in recs] == [True] * 4 + [False] and recs[0]["source"] == "ref0"


def test_data_build_default_path(fixture_data_config, tmp_path):
    overrides = [o for o in fixture_data_config if not o.startswith("output_dir=")] + [f"output_dir={tmp_path / 'ds'}"]
    proc = command("data.build", "--config", "configs/data.yaml", *[a for o in overrides for a in ("--set", o)])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "ds" / "card.json").exists()


@pytest.mark.parametrize("spelling", ["same path", "symlink", "relative"])
def test_commands_refuse_an_output_that_is_an_input(inputs, tmp_path, spelling):
    src = tmp_path / "in.jsonl"
    src.write_text(jsonl([{"id": "x", "text": PARAGRAPHS[0]}]))
    data = src.read_bytes()
    if spelling == "symlink":
        (tmp_path / "link.jsonl").symlink_to(src)
    out = {"same path": src, "symlink": tmp_path / "link.jsonl",
           "relative": f"{'../' * len(ROOT.parts)}{str(src).lstrip('/')}"}[spelling]
    score = command("inference.score", src, "--output", out, "--model", tmp_path / "no-model-needed")
    matching = command("inference.match", "--references", inputs / "refs.jsonl", "--input", src, "--output", out,
                       "--index", tmp_path / "idx")
    refs = command("inference.match", "--references", src, "--input", inputs / "batch.jsonl", "--output", out,
                   "--index", tmp_path / "idx")
    inside = command("inference.score", tmp_path, "--output", tmp_path / "out.jsonl")
    for proc in (score, matching, refs, inside):
        assert proc.returncode == 2 and ("is the input" in proc.stderr or "inside the input" in proc.stderr), proc.stderr
    assert src.read_bytes() == data and not (tmp_path / "idx").exists() and not (tmp_path / "out.jsonl").exists()


def test_score_reads_a_symlink_out_of_an_input_directory_only_with_follow_symlinks(smoke_run, tmp_path):
    (tmp_path / "private.txt").write_text(SPUN)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "own.txt").write_text(PARAGRAPHS[0])
    (tree / "leak.txt").symlink_to(tmp_path / "private.txt")
    for flags, followed in (([], False), (["--follow-symlinks"], True)):
        out = tmp_path / f"out-{followed}.jsonl"
        proc = command("inference.score", f"{tree}/", "--baseline", "--quiet", "--output", out, *flags)
        assert proc.returncode == 0, proc.stderr
        recs = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
        assert list(recs) == ["leak.txt", "own.txt"] and recs["own.txt"]["error"] is None
        leak = recs["leak.txt"]
        assert (leak["error"] is None) == followed and (leak["score"] is not None) == followed
        assert followed or "symlink to a file outside the input directory" in leak["error"]


def test_killed_run_resumes_to_exactly_the_output_of_a_whole_run(smoke_run, tmp_path):
    """Scores stream in on stdin one at a time; the command is SIGKILLed once half are written."""
    ids = ["a", "=b", "a", "c\nd", "e\u2028f", "a", "g\rh", "-i", "j", "a"]
    lines = [json.dumps({"id": i, "text": PARAGRAPHS[k]}) + "\n" for k, i in enumerate(ids)] + ["{broken\n"]
    out, whole = tmp_path / "out.csv", tmp_path / "whole.csv"
    args = [sys.executable, "-m", "inference.score", "-", "--baseline", "--batch-size", "1", "--quiet", "--output"]
    with open(tmp_path / "stderr.log", "w") as log:
        proc = subprocess.Popen([*args, out], stdin=subprocess.PIPE, stderr=log, text=True, cwd=ROOT, env=child_env())
        try:
            proc.stdin.write("".join(lines[:5]))
            proc.stdin.flush()
            while _csv_records(out) < 5:  # however long the machine takes; a command that died fails here
                assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    resumed = subprocess.run([*args, out, "--resume"], check=False, input="".join(lines), capture_output=True, text=True,
                             cwd=ROOT, env=child_env(), timeout=900)
    assert resumed.returncode == 0 and "6 records" in resumed.stderr and "5 skipped" in resumed.stderr, resumed.stderr
    once = subprocess.run([*args, whole], check=False, input="".join(lines), capture_output=True, text=True, cwd=ROOT,
                          env=child_env(), timeout=900)
    assert once.returncode == 0, once.stderr
    assert out.read_bytes() == whole.read_bytes() and _csv_records(out) == len(lines)


def _csv_records(path) -> int:
    if not path.exists():
        return 0
    with open(path, newline="", encoding="utf-8") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)
