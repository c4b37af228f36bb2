"""The Redis Streams worker for real: a throwaway redis-server, `python -m inference.worker` subprocesses
killed mid-batch, and in-process Worker steps with the smoke-trained model."""
from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter

import pytest
import redis

from inference import settings
from inference.worker import BadMessage, Message, Worker, parse_message
from tests.conftest import PARAGRAPHS
from tests.servers import start_redis, start_worker

SPUN = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress a 12 months in "
        "the past. Officials expect the agreement to open the border to commerce and to reinforce financial "
        "strengthen for farmers.")
GROUP = "scorers"


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    server, port = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield port
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_port_with_model(redis_port, smoke_run):
    """Redis, and models:/unspin@champion in the test registry for the worker subprocesses."""
    return redis_port


@pytest.fixture(scope="module")
def r(redis_port):
    client = redis.Redis(port=redis_port)
    yield client
    client.close()


@pytest.fixture(scope="module")
def detector(smoke_run):
    from inference import Detector

    return Detector.load("models:/unspin@champion")


def names(prefix: str) -> dict:
    return {"articles_stream": f"{prefix}:articles", "verdicts_stream": f"{prefix}:verdicts",
            "review_stream": f"{prefix}:review", "dead_stream": f"{prefix}:dead", "seen_key": f"{prefix}:verdicts:ids",
            "group": GROUP}


def overrides(port: int, prefix: str, **extra) -> list[str]:
    values = {"redis_url": f"redis://127.0.0.1:{port}/0", **names(prefix), "batch_size": 16, "block_ms": 300,
              "claim_idle_ms": 1000, "claim_interval_ms": 300, **extra}
    return [f"worker.{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in values.items()]


def group_info(r, stream: str) -> dict:
    for g in r.xinfo_groups(stream):
        if g["name"] in (GROUP, GROUP.encode()):
            return g
    return {}


def entries(r, stream: str) -> list[dict]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in r.xrange(stream)]


def text_for(i: int) -> str:
    if i % 7 == 0:
        return SPUN
    return PARAGRAPHS[i % len(PARAGRAPHS)] + " " + PARAGRAPHS[(i * 5 + 1) % len(PARAGRAPHS)]


MALFORMED = [
    {"json": "{not json"},
    {"json": "[1, 2]"},
    {"json": json.dumps({"text": "no id here"})},
    {"json": json.dumps({"id": "m-no-text"})},
    {"json": json.dumps({"id": "m-number-text", "text": 5})},
    {"json": json.dumps({"id": True, "text": "a bool is not an id"})},
    {"foo": "bar"},
    {"id": "m-fields-no-text"},
    {"id": b"\xff\xfe", "text": "id is not UTF-8"},
    {"id": "  ", "text": "blank id"},
]
ODD = [  # parse fine; the text cannot be scored: a verdict whose record has error set
    ({"id": "odd-empty", "text": ""}, "odd-empty", "empty text"),
    ({"id": "odd-binary", "text": "\x00\x01\x02 binary \x03\x04"}, "odd-binary", "binary"),
    ({"id": "odd-bytes", "text": b"\xff\xfe\xfd not utf-8"}, "odd-bytes", "UTF-8"),
    ({"json": json.dumps({"id": 99, "text": "   "})}, "99", "empty text"),
]


def test_parse_message():
    ok = parse_message(Message("1-0", {b"id": b"a", b"text": "caf\u00e9".encode()}))
    assert (ok.id, ok.text, ok.error) == ("a", "caf\u00e9", None)
    js = parse_message(Message("1-1", {b"json": json.dumps({"id": 7, "text": "t", "title": "x"}).encode()}))
    assert (js.id, js.text) == ("7", "t")
    odd = parse_message(Message("1-2", {b"id": b"b", b"text": b"\xff"}))
    assert odd.text is None and odd.error == "not UTF-8 text"
    expected = ["not valid JSON", "must hold an object", "missing id", "missing text", "not a string",
                "non-empty string or integer", "neither id and text", "missing text", "not UTF-8", "non-empty"]
    for fields, words in zip(MALFORMED, expected):
        raw = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}
        with pytest.raises(BadMessage, match=words):
            parse_message(Message("2-0", raw))
    with pytest.raises(BadMessage, match="512"):
        parse_message(Message("3-0", {b"id": b"i" * 600, b"text": b"t"}))
    with pytest.raises(BadMessage, match="no fields"):
        parse_message(Message("4-0", {}))


def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(r, redis_port_with_model, tmp_path):
    redis_port = redis_port_with_model
    n = names("crash")
    ovr = overrides(redis_port, "crash")
    good_ids, malformed_ids = [], []
    for i in range(400):
        if i % 40 == 3:
            fields = MALFORMED[(i // 40) % len(MALFORMED)]
            malformed_ids.append(r.xadd(n["articles_stream"], fields).decode())
        if i % 100 == 50:
            fields, rid, _ = ODD[(i // 100) % len(ODD)]
            r.xadd(n["articles_stream"], fields)
            good_ids.append(rid)
        if i % 2:
            r.xadd(n["articles_stream"], {"id": f"art-{i:04d}", "text": text_for(i)})
        else:
            r.xadd(n["articles_stream"], {"json": json.dumps({"id": f"art-{i:04d}", "text": text_for(i)})})
        good_ids.append(f"art-{i:04d}")
    for i in (5, 6, 399):  # the same article sent again: still one verdict
        r.xadd(n["articles_stream"], {"id": f"art-{i:04d}", "text": text_for(i)})
    total = r.xlen(n["articles_stream"])
    assert len(malformed_ids) == 10 and len(set(good_ids)) == 404

    a = start_worker(tmp_path / "worker-a.log", *ovr, consumer="worker-a")
    try:
        def mid_batch():
            return r.xlen(n["verdicts_stream"]) >= 40 and group_info(r, n["articles_stream"]).get("pending", 0) > 0

        a.wait_until(mid_batch, 240, "worker A scoring", interval=0.02)
        a.send(signal.SIGKILL)
        assert a.wait(10) == -signal.SIGKILL
    finally:
        a.stop()
    held = r.xpending_range(n["articles_stream"], GROUP, "-", "+", 1000)
    assert held and {p["consumer"] for p in held} == {b"worker-a"}, "the kill left no batch in hand"
    assert r.xlen(n["verdicts_stream"]) < len(good_ids)

    b = start_worker(tmp_path / "worker-b.log", *ovr, consumer="worker-b")
    try:
        def drained():
            g = group_info(r, n["articles_stream"])
            return g.get("pending") == 0 and g.get("lag") == 0 and g.get("entries-read") == total

        b.wait_until(drained, 240, "worker B drains the stream", interval=0.2)
        assert "claimed" in b.output()

        verdicts = entries(r, n["verdicts_stream"])
        counts = Counter(v["id"] for v in verdicts)
        assert set(counts) == set(good_ids)
        assert [k for k, c in counts.items() if c != 1] == []
        records = {v["id"]: json.loads(v["record"]) for v in verdicts}
        for rid, rec in records.items():
            assert rec["id"] == rid and set(rec) == {"id", "score", "label", "threshold", "model", "sentences",
                                                     "spans", "error"}
            assert (rec["label"] or "") == next(v["label"] for v in verdicts if v["id"] == rid)
        for _, rid, words in ODD:
            assert records[rid]["error"] and words in records[rid]["error"] and records[rid]["score"] is None
        assert all(records[i]["error"] is None for i in good_ids if i.startswith("art-"))

        dead = entries(r, n["dead_stream"])
        assert Counter(d["message_id"] for d in dead) == Counter(malformed_ids)
        assert all(d["error"] and d["stream"] == n["articles_stream"] for d in dead)
        assert {d["id"] for d in dead} >= {"m-no-text", "m-number-text", "m-fields-no-text"}

        review = entries(r, n["review_stream"])
        spun = {i for i, rec in records.items() if rec["label"] == "spun"}
        assert Counter(x["id"] for x in review) == Counter(spun)
        assert all(json.loads(x["record"]) == records[x["id"]] for x in review)

        seen = {k.decode(): v.decode() for k, v in r.hgetall(n["seen_key"]).items()}
        assert set(seen) == set(good_ids)

        b.send(signal.SIGTERM)  # idle, blocked in XREADGROUP: exits 0 within block_ms
        assert b.wait(30) == 0
    finally:
        b.stop()


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(r, redis_port_with_model, tmp_path):
    redis_port = redis_port_with_model
    n = names("term")
    long_text = "\n\n".join(PARAGRAPHS * 2)
    for i in range(300):
        r.xadd(n["articles_stream"], {"id": f"t-{i}", "text": long_text if i % 2 else text_for(i)})
    c = start_worker(tmp_path / "worker-c.log", *overrides(redis_port, "term"), consumer="worker-c")
    try:
        c.wait_until(lambda: r.xlen(n["verdicts_stream"]) >= 16
                     and group_info(r, n["articles_stream"]).get("pending", 0) > 0, 240, "worker C scoring",
                     interval=0.02)
        c.send(signal.SIGTERM)
        assert c.wait(60) == 0
        g = group_info(r, n["articles_stream"])
        assert g["pending"] == 0, "the batch in hand was left unacknowledged"
        assert g["lag"] > 0, "the worker drained the whole stream instead of stopping"
        assert r.xlen(n["verdicts_stream"]) == g["entries-read"]
        assert "finishing the batch in hand" in c.output()
    finally:
        c.stop()


# ---- in-process steps -------------------------------------------------------------------------

def make_worker(port, prefix, detector, consumer="w", **extra) -> Worker:
    cfg = settings.load_service(None, overrides(port, prefix, **extra))
    w = Worker(cfg, detector, consumer=consumer)
    w.ensure_group()
    return w


def test_message_failing_max_attempts_goes_dead(r, redis_port, detector):
    n = names("poison")
    w = make_worker(redis_port, "poison", detector, max_attempts=2, claim_idle_ms=1)
    m1 = r.xadd(n["articles_stream"], {"id": "p1", "text": SPUN}).decode()
    m2 = r.xadd(n["articles_stream"], {"id": "p2", "text": SPUN}).decode()
    # two consumers took them and died: p1 was delivered twice, p2 once
    r.xreadgroup(GROUP, "ghost-1", {n["articles_stream"]: ">"}, count=10)
    r.xclaim(n["articles_stream"], GROUP, "ghost-2", 0, [m1])
    time.sleep(0.05)  # idle longer than claim_idle_ms
    msgs = w.claim_stale()
    assert {m.message_id: m.deliveries for m in msgs} == {m1: 3, m2: 2}
    w.process(msgs)
    dead = entries(r, n["dead_stream"])
    assert [(d["message_id"], d["id"], d["deliveries"]) for d in dead] == [(m1, "p1", "3")]
    assert "gave up after 3 deliveries" in dead[0]["error"] and "max_attempts 2" in dead[0]["error"]
    assert [v["id"] for v in entries(r, n["verdicts_stream"])] == ["p2"]
    assert group_info(r, n["articles_stream"])["pending"] == 0


def test_a_resent_or_redelivered_id_gets_no_second_verdict(r, redis_port, detector):
    n = names("idem")
    w = make_worker(redis_port, "idem", detector)
    for _ in range(2):  # twice in one batch
        r.xadd(n["articles_stream"], {"id": "same", "text": SPUN})
    assert w.run_once(block_ms=100) == 2
    r.xadd(n["articles_stream"], {"json": json.dumps({"id": "same", "text": SPUN})})  # and again later
    assert w.run_once(block_ms=100) == 1
    assert [v["id"] for v in entries(r, n["verdicts_stream"])] == ["same"]
    assert w.counts.verdicts == 1 and w.counts.duplicates == 2
    assert group_info(r, n["articles_stream"])["pending"] == 0


def test_review_gets_exactly_the_spun_records(r, redis_port, detector):
    n = names("route")
    w = make_worker(redis_port, "route", detector)
    shipped = detector.threshold
    try:
        detector.threshold = 0.0          # everything is spun
        r.xadd(n["articles_stream"], {"id": "all-1", "text": PARAGRAPHS[0]})
        w.run_once(block_ms=100)
        detector.threshold = 1.01         # nothing is
        r.xadd(n["articles_stream"], {"id": "none-1", "text": SPUN})
        w.run_once(block_ms=100)
    finally:
        detector.threshold = shipped
    assert [(v["id"], v["label"]) for v in entries(r, n["verdicts_stream"])] == [("all-1", "spun"), ("none-1", "clean")]
    review = entries(r, n["review_stream"])
    assert [x["id"] for x in review] == ["all-1"] and review[0]["verdict_id"]


def test_pending_message_deleted_from_the_stream_is_just_acknowledged(r, redis_port, detector):
    n = names("gone")
    w = make_worker(redis_port, "gone", detector, consumer="same-name")
    mid = r.xadd(n["articles_stream"], {"id": "g1", "text": SPUN})
    r.xreadgroup(GROUP, "same-name", {n["articles_stream"]: ">"}, count=10)  # then this consumer died
    r.xdel(n["articles_stream"], mid)
    msgs = w.read_own_pending()  # the restarted consumer, same name
    assert [m.fields for m in msgs] == [{}]
    w.process(msgs)
    assert group_info(r, n["articles_stream"])["pending"] == 0 and r.xlen(n["verdicts_stream"]) == 0


def test_idle_consumers_with_nothing_pending_are_forgotten(r, redis_port):
    n = names("prune")
    w = make_worker(redis_port, "prune", None, consumer="live", prune_idle_ms=1)
    r.xadd(n["articles_stream"], {"id": "x1", "text": SPUN})
    r.xreadgroup(GROUP, "holder", {n["articles_stream"]: ">"}, count=1)   # died holding x1
    r.xgroup_createconsumer(n["articles_stream"], GROUP, "restarted-long-ago")  # holds nothing
    time.sleep(0.05)
    assert w.prune_consumers() == ["restarted-long-ago"]
    names_left = {c["name"] for c in r.xinfo_consumers(n["articles_stream"], GROUP)}
    assert b"holder" in names_left and b"restarted-long-ago" not in names_left


def test_a_batch_in_hand_is_not_claimed_however_long_it_takes(r, redis_port, detector):
    n = names("slow")
    busy = make_worker(redis_port, "slow", detector, consumer="busy", claim_idle_ms=300)
    other = make_worker(redis_port, "slow", detector, consumer="other", claim_idle_ms=300)
    long_text = "\n\n".join(PARAGRAPHS * 5)  # ~1,000 words
    for i in range(8):
        r.xadd(n["articles_stream"], {"id": f"s{i}", "text": long_text})
    msgs = busy.read_new(100)
    scoring = threading.Thread(target=busy.process, args=(msgs,))
    t0 = time.time()
    scoring.start()
    claimed = []
    while scoring.is_alive():  # a live worker looking for messages of dead ones meanwhile
        claimed += other.claim_stale()
        time.sleep(0.05)
    scoring.join()
    assert time.time() - t0 > 0.9, "scored within claim_idle_ms: too quick to tell"
    assert claimed == [] and busy.counts.verdicts == 8 and busy.counts.stale == 0
    assert group_info(r, n["articles_stream"])["pending"] == 0
    assert sorted(v["id"] for v in entries(r, n["verdicts_stream"])) == [f"s{i}" for i in range(8)]
