"""Hostile texts (tests/hostile.py) of 200 KB through the batch command, the HTTP service and the Redis worker:
each gets its record back. Nothing here depends on speed: bench/bench_hostile.py prints the figures, and the
timeouts only turn a hang into a failure.

The three paths score with the smoke-trained baseline (`--baseline`), whose own work is light, so the time
spent is the text handling under test (on a slow machine the tagger's encoder alone would take minutes per
200 KB text). They run again with the default model in its default mode (thorough: the language model reads
every sentence), on the same families at 2 KB: what the default path makes of such texts, at a modest cost.
What the tagger adds around its encoder (tokenised windows, lexicon hits, spans, suggestions) is run on the
200 KB texts in-process.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import redis

from inference.io.outputs import json_line
from tests.conftest import ROOT
from tests.hostile import FAMILIES, make
from tests.servers import child_env, start_redis, start_service, start_worker

SIZE = 200_000  # bytes: the service's max_text_bytes, so every path scores it
TIMEOUT = 300  # seconds: a hang fails the test; nothing asserts how fast
BASELINE = "models:/unspin-baseline@champion"
# Records that are errors as the batch command reads the .html files (the service and worker get raw text).
HTML_ERRORS = {"html_nested": "HTML not readable", "html_lt_a": "empty text"}


@dataclass
class Case:
    """A model as the commands are told to use it, and the texts it gets."""
    size: int
    batch_args: list[str]  # for `inference.score`
    overrides: list[str]  # --set for the service and the worker
    html_errors: dict[str, str]  # HTML_ERRORS at this size


CASES = {
    "baseline": Case(SIZE, ["--baseline"], [f"model={json.dumps(BASELINE)}"], HTML_ERRORS),
    # configs/inference.yaml's model and mode: models:/unspin@champion, thorough (nothing to set). At 2 KB the
    # nesting is under libxml2's depth limit, so only the HTML with no text is an error record.
    "default": Case(2_000, [], [], {"html_lt_a": "empty text"}),
}


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {name: make(name, SIZE) for name in FAMILIES}


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> tuple[Case, dict[str, str]]:
    c = CASES[request.param]
    return c, {name: make(name, c.size) for name in FAMILIES}


def check_records(records: list[dict], expected_errors: dict[str, str]) -> None:
    assert [r["id"] for r in records] == list(FAMILIES)
    for r in records:
        want = expected_errors.get(r["id"])
        assert (r["error"] is None) if want is None else (want in r["error"]), (r["id"], r["error"])
        assert (r["score"] is None) == (r["error"] is not None)


def test_batch_command_default_path_writes_a_record_for_each(smoke_run, case, tmp_path):
    c, texts = case
    files = []
    for name, (suffix, _) in FAMILIES.items():
        files.append(tmp_path / f"{name}.{suffix}")
        files[-1].write_text(texts[name])
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "inference.score", *map(str, files), "--output", str(out),
                           *c.batch_args], check=False, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "article" in proc.stderr  # the progress bar was drawn
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for r, path in zip(records, files):
        assert r["id"] == str(path)
        r["id"] = path.stem
    check_records(records, c.html_errors)


def test_service_returns_a_record_for_each_and_stays_healthy(smoke_run, case, tmp_path):
    c, texts = case
    server, url = start_service(tmp_path / "service.log", *c.overrides, f"http.request_timeout_s={TIMEOUT}")
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            records = []
            for name, text in texts.items():
                r = client.post("/v1/score", json={"id": name, "text": text})
                assert r.status_code == 200, (name, r.status_code, r.text[:500])
                records.append(r.json())
            check_records(records, {})
            assert client.get("/healthz").status_code == 200
    finally:
        server.stop()


def test_worker_writes_one_verdict_for_each(smoke_run, case, tmp_path):
    c, texts = case
    rserver, port = start_redis(tmp_path / "redis")
    worker = None
    try:
        r = redis.Redis(port=port)
        worker = start_worker(tmp_path / "worker.log", *c.overrides,
                              f'worker.redis_url="redis://127.0.0.1:{port}/0"', "worker.block_ms=200")
        for name, text in texts.items():
            r.xadd("unspin:articles", {"id": name, "text": text})
        worker.wait_until(lambda: r.xlen("unspin:verdicts") >= len(texts), TIMEOUT, "a verdict for every text")
        records = {}
        for _, fields in r.xrange("unspin:verdicts"):
            record = json.loads(fields[b"record"])
            assert record["id"] not in records
            records[record["id"]] = record
        check_records([records[name] for name in FAMILIES], {})
        assert r.xlen("unspin:dead") == 0
    finally:
        if worker is not None:
            worker.stop()
        rserver.stop()


def test_tagger_steps_around_the_encoder_take_every_family(smoke_run, texts):
    """Segmentation and prose rules (the baseline's analyse), then what the tagger detector does around its
    encoder: tokenised windows, lexicon hits, and, with every word flagged (the most spans and suggestions
    there can be), spans, suggestions and the JSON record."""
    from inference import Detector
    from inference.model.tagger import encode

    tagger = Detector.load("models:/unspin@champion", mode="fast", spans="all")  # the word probabilities set below
    baseline = Detector.load(BASELINE)
    for name, text in texts.items():
        [a] = baseline.analyse([text])
        words = [[text[s:e] for s, e in sent.words] for sent in a.sentences]
        _, windows = encode(tagger.tagger.tokenizer, words, tagger.tagger.max_length, tagger.tagger.stride)
        assert len(windows) >= len([w for w in words if w]), name
        for sent in a.sentences:
            sent.probs = np.ones(len(sent.words), dtype=np.float32)
            tagger.mark_lexicon_hits(text, sent)
        [score] = tagger.text_scores([a])
        record = json.loads(json_line(tagger.record(name, a, score)))
        assert record["error"] is None and record["sentences"], name
        assert all(text[s["start"]:s["end"]] == s["text"] for s in record["spans"]), name
