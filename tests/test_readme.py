"""README.md as a newcomer reads and runs it: at most 250 lines, links that lead somewhere, every `--help`
command of its code blocks, and the score example (the block that writes a two-record articles.jsonl and scores
it) run as written, with `models:/unspin@champion` the smoke-trained model of the test MLflow store. Commands run
in a temporary folder, with this checkout first on PYTHONPATH, so they leave nothing in the repository.

Also bench/table.py, which rewrites the marked tables of bench/README.md that `make bench` regenerates."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from bench import table
from tests.conftest import ROOT
from tests.servers import child_env

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(info: str) -> list[str]:
    """The bodies of README.md's fenced code blocks of one kind (bash, python, json)."""
    return [body for kind, body in FENCE.findall(README.read_text(encoding="utf-8")) if kind == info]


def commands(body: str) -> list[str]:
    """A shell block's commands: continued lines (trailing backslash) joined, blank and comment lines dropped."""
    out, current = [], ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        line = current + line
        current = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


HELP = [c for body in blocks("bash") for c in commands(body) if c.startswith("python -m ") and " --help" in c]
SCORE = [body for body in blocks("bash") if "> articles.jsonl" in body and "python -m inference.score" in body]


def run(args, cwd, **kw) -> subprocess.CompletedProcess:
    """As a user's shell runs it: `python` is the venv's (first on PATH), this checkout first on PYTHONPATH."""
    return subprocess.run(args, cwd=cwd, env=child_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          check=False, timeout=1800, **kw)


def test_readme_is_at_most_250_lines_of_at_most_120_characters():
    text = README.read_text(encoding="utf-8")
    assert text.count("\n") <= 250  # wc -l
    assert [n for n, line in enumerate(text.splitlines(), 1) if len(line) > 120] == []


def test_readme_links_lead_to_files_of_the_repository():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8")):
        assert (ROOT / target).exists(), target


def test_readme_shows_a_help_command_for_every_scoring_command():
    modules = {c.split()[2] for c in HELP}
    assert {"inference.score", "inference.service", "inference.worker", "inference.spark",
            "inference.match"} <= modules


@pytest.mark.parametrize("command", HELP)
def test_help_command_runs_as_written(command, tmp_path):
    proc = run(["bash", "-c", command], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:"), proc.stdout[:200]


def test_score_example_runs_as_written_on_its_two_records(smoke_run, tmp_path):
    assert len(SCORE) == 1, "README: one bash block writes articles.jsonl and scores it"
    proc = run(["bash", "-euo", "pipefail", "-c", SCORE[0]], tmp_path)
    assert proc.returncode == 0, proc.stderr
    inputs = [json.loads(line) for line in (tmp_path / "articles.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(inputs) == 2 and [r["id"] for r in records] == [i["id"] for i in inputs]
    for record, item in zip(records, inputs, strict=True):
        assert record["error"] is None
        assert {"id", "score", "label", "threshold", "model", "sentences", "spans", "error"} <= record.keys()
        assert 0 <= record["score"] <= 1
        assert record["label"] == ("spun" if record["score"] >= record["threshold"] else "clean")
        assert record["model"]["name"] == "unspin"
        for part in record["sentences"] + record["spans"]:
            assert 0 <= part["start"] < part["end"] <= len(item["text"])
        assert all(item["text"][s["start"]:s["end"]] == s["text"] for s in record["spans"])


def test_python_example_runs_as_written(smoke_run, tmp_path):
    (body,) = [b for b in blocks("python") if "Detector.load" in b]
    proc = run(["python", "-c", body + "\nimport json; print(json.dumps(records))"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(records) == 2 and all(r["error"] is None and 0 <= r["score"] <= 1 for r in records)


# ---- bench/README.md: the tables `make bench` regenerates --------------------------------------------------

def test_bench_section_is_rewritten_in_place_and_the_rest_kept(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# Benchmarks\n\nintro\n\n<!-- bench:score -->\nold figures\n<!-- /bench:score -->\n\noutro\n")
    table.write_section("score", ["variant", "articles/s"], [["fast", 20.5], ["a|b", None]], "Measured now.",
                        path=path)
    assert path.read_text() == ("# Benchmarks\n\nintro\n\n<!-- bench:score -->\nMeasured now.\n\n"
                                "| variant | articles/s |\n|---|---|\n| fast | 20.5 |\n| a\\|b |  |\n"
                                "<!-- /bench:score -->\n\noutro\n")
    table.write_section("lm", ["precision"], [["bfloat16"]], "", path=path)  # a new section goes at the end
    text = path.read_text()
    assert text.index("<!-- /bench:score -->") < text.index("<!-- bench:lm -->") and text.endswith(
        "<!-- bench:lm -->\n| precision |\n|---|\n| bfloat16 |\n<!-- /bench:lm -->\n")
    table.write_section("score", ["variant"], [["thorough"]], "Again.", path=path)  # the same section again
    again = path.read_text()
    assert again == text.replace("Measured now.\n\n| variant | articles/s |\n|---|---|\n| fast | 20.5 |\n"
                                 "| a\\|b |  |\n", "Again.\n\n| variant |\n|---|\n| thorough |\n")


def test_bench_section_refuses_what_it_cannot_write(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("<!-- bench:score -->\nno end marker\n")
    with pytest.raises(ValueError, match="no <!-- /bench:score -->"):
        table.write_section("score", ["a"], [], "", path=path)
    with pytest.raises(ValueError, match="cells"):
        table.markdown(["a"], [[1, 2]])
    with pytest.raises(ValueError, match="section name"):
        table.markers("score --> <!--")
    assert path.read_text() == "<!-- bench:score -->\nno end marker\n"


def test_bench_readme_holds_the_sections_the_benchmarks_write():
    text = (ROOT / "bench/README.md").read_text(encoding="utf-8")
    for name in ("score", "score-accuracy"):  # bench/bench_score.py
        begin, end = table.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end)
    for script in ("bench/bench_score.py", str(ROOT / "bench/bench_score.py")):
        assert table.provenance([script, "--articles", "150"]).endswith(
            "by `python bench/bench_score.py --articles 150`.")
