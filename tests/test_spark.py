"""inference.spark on a real Spark (an embedded local[2] master on 127.0.0.1, one session for the module), with
the registered smoke model and real JSONL, CSV and Parquet files: one output row per input row, error records
for the rows that cannot be scored, and the records Detector.score gives for the same texts."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter

import pyarrow.dataset as ds
import pytest

from inference import settings
from inference import spark as spark_cmd
from inference.model import record
from inference.run_detector import load_detector
from tests.conftest import PARAGRAPHS, ROOT
from tests.servers import child_env

SPUN = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress. Researchers "
        "said counterfeit consciousness could help doctors read medical images faster.")
MAX_BYTES = settings.load().max_bytes  # configs/inference.yaml: the batch command's limit
FIELDS = list(record.FIELDS)

# (id as written in the output, text scored or None, what the error says or None)
EXPECTED = [
    ("good-1", SPUN, None), ("good-2", PARAGRAPHS[0], None), ("7", PARAGRAPHS[1], None),
    ("dup", PARAGRAPHS[2], None), ("dup", PARAGRAPHS[2], None), ("empty", None, "empty text"),
    ("huge", None, f"over the limit of {MAX_BYTES} bytes"), ("number", None, "text is not a string (int)"),
    (None, None, "missing id (in file:"), (None, None, "malformed JSON"),
    ("c1", PARAGRAPHS[3], None), ("c\n2", PARAGRAPHS[4], None), (None, None, "missing id"),
    ("c4", None, "text missing"),
    ("1", PARAGRAPHS[5], None), ("2", None, "text missing"), (None, None, "missing id"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A directory of JSONL, CSV and (in a subdirectory) Parquet rows, good and bad, and a file Spark skips."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path_factory.mktemp("spark") / "corpus"
    (d / "more").mkdir(parents=True)
    rows = [{"id": "good-1", "text": SPUN}, {"id": "good-2", "text": PARAGRAPHS[0]}, {"id": 7, "text": PARAGRAPHS[1]},
            {"id": "dup", "text": PARAGRAPHS[2]}, {"id": "dup", "text": PARAGRAPHS[2]}, {"id": "empty", "text": "  "},
            {"id": "huge", "text": "word " * (MAX_BYTES // 5 + 1)}, {"id": "number", "text": 12345},
            {"text": PARAGRAPHS[0]}]
    (d / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n{broken\n")
    with open(d / "b.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "text"], ["c1", PARAGRAPHS[3]], ["c\n2", PARAGRAPHS[4]], ["", PARAGRAPHS[5]],
                                 ["c4", ""]])
    pq.write_table(pa.table({"id": [1, 2, None], "text": [PARAGRAPHS[5], None, PARAGRAPHS[6]]}), d / "more/c.parquet")
    (d / "notes.txt").write_text("not an input format: skipped")
    return d


# One text per batch: a text's score depends on the texts it is batched with (int8 activation scales and the
# language-model stage are computed per batch), so only texts scored alone can be compared across runs.
OVERRIDES = ["master=local[2]", "batch_size=1", "spans=all"]  # spans of every text: they travel through Spark too


@pytest.fixture(scope="module")
def cfg():
    return settings.load_spark(None, OVERRIDES)


@pytest.fixture(scope="module")
def spark(cfg):
    session = spark_cmd.session(cfg, progress=False)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def parquet_run(smoke_run, spark, cfg, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("spark-out") / "scores[1].parquet"  # glob characters are taken literally
    summary = spark_cmd.score(spark, [str(corpus)], str(out), cfg)
    return summary, ds.dataset(str(out)).to_table().to_pylist()  # as the README reads it back


def by_id(records):
    return sorted(records, key=lambda r: (str(r["id"]), r["error"] or ""))


def assert_same(a: dict, b: dict) -> None:
    """Equal records, scores to 1e-5 (the encoder batches texts differently in each run)."""
    assert list(a) == list(b) == FIELDS
    for key in FIELDS:
        if key == "score" and a[key] is not None:
            assert a[key] == pytest.approx(b[key], abs=1e-5)
        elif key in ("sentences", "spans"):
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                assert {k: v for k, v in x.items() if k != "score"} == {k: v for k, v in y.items() if k != "score"}
                assert x["score"] == pytest.approx(y["score"], abs=1e-5)
        else:
            assert a[key] == b[key], key


def test_one_row_per_input_row_with_error_rows(parquet_run):
    summary, rows = parquet_run
    assert len(rows) == summary["records"] == len(EXPECTED)
    assert Counter(r["id"] for r in rows) == Counter(rid for rid, _, _ in EXPECTED)
    assert summary["errors"] == sum(1 for *_, err in EXPECTED if err) == sum(1 for r in rows if r["error"])
    assert summary["spun"] + summary["clean"] + summary["errors"] == len(rows)
    expected_errors = sorted((str(rid), err) for rid, _, err in EXPECTED if err)
    errors = sorted((str(r["id"]), r["error"]) for r in rows if r["error"])
    for (rid, want), (got_id, got) in zip(expected_errors, errors):
        assert rid == got_id and want in got, (rid, got)
    for r in rows:
        if r["error"]:
            assert r["score"] is None and r["label"] is None and r["sentences"] == [] and r["spans"] == []
            assert r["model"]["name"] and 0 <= r["threshold"] <= 1


def test_same_records_as_detector_score(parquet_run, cfg):
    _, rows = parquet_run
    good = [(rid, text) for rid, text, err in EXPECTED if not err]
    det = load_detector(cfg.inference)  # loaded as the executors load it: configs/inference.yaml's settings
    want = by_id([det.score([text], ids=[rid])[0] for rid, text in good])
    got = by_id([r for r in rows if not r["error"]])
    assert len(got) == len(want) == len(good)
    for a, b in zip(got, want):
        assert_same(a, b)
    assert {r["label"] for r in got} <= {"spun", "clean"} and any(r["spans"] for r in got)


def test_command_default_path_writes_plain_json(parquet_run, corpus, tmp_path):
    """`python -m inference.spark` as a user runs it (progress bar on), JSONL out: the Parquet run's records."""
    out = tmp_path / "scores.jsonl"
    proc = subprocess.run([sys.executable, "-m", "inference.spark", "--input", str(corpus), "--output", str(out),
                           *[a for o in OVERRIDES for a in ("--set", o)]], capture_output=True, text=True,
                          check=False, cwd=ROOT, env=child_env(), timeout=900)  # the timeout only guards against a hang
    assert proc.returncode == 0, proc.stderr
    assert "[Stage" in proc.stderr, proc.stderr  # Spark's console progress bar
    assert f"{len(EXPECTED)} records" in proc.stderr and "9 errors" in proc.stderr, proc.stderr
    assert (out / "_SUCCESS").exists()
    lines = [line for part in sorted(out.glob("part-*.json")) for line in part.read_text().splitlines()]
    records = [json.loads(line) for line in lines]
    assert len(records) == len(EXPECTED)
    assert all(list(r) == FIELDS and isinstance(r["spans"], list) for r in records)  # plain JSON, null fields kept
    assert all("suggestion" in s for r in records for s in r["spans"])
    for a, b in zip(by_id(records), by_id(parquet_run[1])):
        assert_same(a, b)


def test_refusals(spark, cfg, corpus, tmp_path):
    """What the command cannot run on fails before any scoring, with a message that says why."""
    (tmp_path / "exists.jsonl").mkdir()
    (tmp_path / "no_text.csv").write_text("id,body\nx,hello\n")
    cases = [([str(corpus)], str(tmp_path / "out.csv"), "must end in .jsonl or .parquet"),
             ([str(corpus / "notes.txt")], str(tmp_path / "o.jsonl"), "no JSONL, CSV or Parquet file"),
             ([str(tmp_path / "no_text.csv")], str(tmp_path / "o.jsonl"), "has no column text"),
             ([str(corpus)], str(corpus / "inside.jsonl"), "inside the input directory"),
             ([str(corpus)], str(tmp_path / "exists.jsonl"), "already exists")]
    for inputs, output, message in cases:
        with pytest.raises(Exception, match=message):
            spark_cmd.score(spark, inputs, output, cfg)


def test_settings_route_overrides_and_name_bad_values():
    from data.configfile import ConfigError

    cfg = settings.load_spark(None, ["master=local[3]", "quantize=false", "partitions=7"])
    assert (cfg.master, cfg.partitions, cfg.inference.quantize) == ("local[3]", 7, False)
    assert cfg.inference.max_bytes == MAX_BYTES  # the inference section is configs/inference.yaml's
    for override, message in [("partitions=0", "partitions: must be at least 1"), ("mastr=local", "unknown key")]:
        with pytest.raises(ConfigError, match=message):
            settings.load_spark(None, [override])
