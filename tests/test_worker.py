"""The Redis Streams worker for real: throwaway redis-servers on 127.0.0.1, `python -m inference.worker`
subprocesses killed, stopped and raced against each other, and in-process Worker steps, all with the
smoke-trained model. Every fault test ends with the same ledger: every valid message has exactly one
verdict, every bad one exactly one dead letter, nothing pending.

Timing is controlled by the test, never assumed: a message holding `hold_text(path)` is held in scoring
until the test creates `path` (tests/hooks.py, loaded in the worker's scoring process through
`scoring.loader`), and `<path>.held` tells the test that scoring is under way. Nor does a test wait for a
message to grow idle: `age` sets the idle time Redis keeps for it. Tests with two live workers give the
heartbeat (every claim_idle_ms / 3) seconds of slack, so a busy machine cannot make it late."""
from __future__ import annotations

import json
import signal
import time
from collections import Counter

import psutil
import pytest
import redis

from inference import settings
from inference.model.detector import Detector
from inference.model.record import FIELDS, ScoreRecord, error_record
from inference.scorer_process import InProcess
from inference.worker import BadMessage, Message, Worker, parse_message
from tests.conftest import PARAGRAPHS
from tests.hooks import DIE, hold_text, holds
from tests.servers import start_redis, start_worker, wait_ended

SPUN = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress a 12 months in "
        "the past. Officials expect the agreement to open the border to commerce and to reinforce financial "
        "strengthen for farmers.")
GROUP = "scorers"
MAX_TEXT, MAX_MESSAGE = 20_000, 100_000
# The scoring hooks, and no time limit on scoring unless a test sets one: a held message must stay held as long
# as the test says, whatever the machine's speed.
PATIENT = ["scoring.loader=tests.hooks:held_detector", "scoring.budget_s=3600"]
WAIT = 900  # seconds: only turns a hang into a failure
CLAIM_IDLE_MS = 1000  # one live worker at a time: the messages of a dead one are claimed soon
LIVE_CLAIM_IDLE_MS = 9000  # two live workers: a heartbeat may come 6 s late before the other could claim
AGED_MS = 10 * LIVE_CLAIM_IDLE_MS  # how idle `age` makes a message look: a dead consumer's, for any worker here


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


@pytest.fixture
def own_redis(tmp_path, smoke_run):
    """A redis-server of the test's own (to kill, pause or restart), with AOF, and a client."""
    server, port = start_redis(tmp_path / "redis", persistent=True)
    client = redis.Redis(port=port)
    try:
        yield server, port, client
    finally:
        client.close()
        server.send(signal.SIGCONT)
        server.stop()


def names(prefix: str) -> dict:
    return {"articles_stream": f"{prefix}:articles", "verdicts_stream": f"{prefix}:verdicts",
            "review_stream": f"{prefix}:review", "dead_stream": f"{prefix}:dead", "seen_prefix": f"{prefix}:seen:",
            "group": GROUP}


def overrides(port: int, prefix: str, *more: str, **worker) -> list[str]:
    values = {"redis_url": f"redis://127.0.0.1:{port}/0", **names(prefix), "batch_size": 16, "block_ms": 300,
              "claim_idle_ms": CLAIM_IDLE_MS, "claim_interval_ms": 300, "max_message_bytes": MAX_MESSAGE, **worker}
    return ([f"worker.{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in values.items()]
            + [f"max_text_bytes={MAX_TEXT}", *PATIENT, *more])


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


DEEP = "[" * 20_000 + "]" * 20_000
MALFORMED = [  # (fields, words of the dead letter's error, article id the dead letter carries)
    ({"json": "{not json"}, "not valid JSON", ""),
    ({"json": DEEP}, "nested too deeply", ""),
    ({"json": '{"id": "m-deep-text", "text": ' + DEEP + "}"}, "nested too deeply", ""),
    ({"json": "[1, 2]"}, "must hold an object", ""),
    ({"json": json.dumps({"text": "no id here"})}, "missing id", ""),
    ({"json": json.dumps({"id": "m-no-text"})}, "missing text", "m-no-text"),
    ({"json": json.dumps({"id": "m-number-text", "text": 5})}, "not a string", "m-number-text"),
    ({"json": json.dumps({"id": "m-list-text", "text": ["a", "b"]})}, "not a string", "m-list-text"),
    ({"json": json.dumps({"id": True, "text": "a bool is not an id"})}, "non-empty string or integer", ""),
    ({"json": '{"id": ' + "9" * 5000 + ', "text": "a 5,000-digit id"}'}, "cannot be read", ""),
    ({"json": b"\xff\xfe{}"}, "not UTF-8", ""),
    ({"foo": "bar"}, "neither id and text", ""),
    ({"id": "m-fields-no-text"}, "missing text", "m-fields-no-text"),
    ({"id": b"\xff\xfe", "text": "id is not UTF-8"}, "not UTF-8", ""),
    ({b"\xff\xfe": b"x", "id": "m-binary-field-name", "text": "t"}, "not UTF-8", ""),
    ({"id": "  ", "text": "blank id"}, "non-empty", ""),
    ({"id": "i" * 600, "text": "t"}, "600 characters", ""),
    ({"id": "m-huge", "text": "word " * (MAX_MESSAGE // 5)}, "over the limit", ""),
]
ODD = [  # parse fine; the text cannot be scored: a verdict whose record has error set
    ({"id": "odd-empty", "text": ""}, "odd-empty", "empty text"),
    ({"id": "odd-binary", "text": "\x00\x01\x02 binary \x03\x04"}, "odd-binary", "binary"),
    ({"id": "odd-bytes", "text": b"\xff\xfe\xfd not utf-8"}, "odd-bytes", "UTF-8"),
    ({"json": json.dumps({"id": 99, "text": "   "})}, "99", "empty text"),
    ({"id": "odd-long", "text": "word " * (MAX_TEXT // 4)}, "odd-long", "over the limit"),
]


def fill(r, n: dict, count: int, hold: tuple[int, object] | None = None, bad_every: int = 40) -> tuple[set, list]:
    """`count` articles (as id/text fields or json), a malformed message every `bad_every`, an odd text
    every 100 (and the message held at `hold` = (index, release path)). Returns the ids that must get
    one verdict each and the message ids that must get one dead letter each."""
    valid, bad = set(), []
    for i in range(count):
        if bad_every and i % bad_every == 3:
            bad.append(r.xadd(n["articles_stream"], MALFORMED[(i // bad_every) % len(MALFORMED)][0]).decode())
        if i % 100 == 50:
            fields, rid, _ = ODD[(i // 100) % len(ODD)]
            r.xadd(n["articles_stream"], fields)
            valid.add(rid)
        rid = f"art-{i:04d}"
        text = hold_text(hold[1]) if hold and i == hold[0] else text_for(i)
        r.xadd(n["articles_stream"], {"id": rid, "text": text} if i % 2 else {"json": json.dumps({"id": rid, "text": text})})
        valid.add(rid)
    return valid, bad


def assert_ledger(r, n: dict, valid: set, bad: list) -> dict:
    """Every valid id has exactly one verdict, every bad message exactly one dead letter, nothing is pending,
    and review holds exactly the spun verdicts. Returns the records by id."""
    verdicts = entries(r, n["verdicts_stream"])
    counts = Counter(v["id"] for v in verdicts)
    assert set(counts) == valid and [k for k, c in counts.items() if c != 1] == []
    assert Counter(d["message_id"] for d in entries(r, n["dead_stream"])) == Counter(bad)
    assert group_info(r, n["articles_stream"])["pending"] == 0
    records = {v["id"]: json.loads(v["record"]) for v in verdicts}
    for v in verdicts:
        rec = records[v["id"]]
        assert rec["id"] == v["id"] and (rec["label"] or "") == v["label"]
        assert set(rec) == set(FIELDS)
    review = entries(r, n["review_stream"])
    assert Counter(x["id"] for x in review) == Counter(i for i, rec in records.items() if rec["label"] == "spun")
    assert all(r.exists(n["seen_prefix"] + i) for i in valid)
    return records


def drained(r, n: dict):
    def check():
        g = group_info(r, n["articles_stream"])
        return g.get("pending") == 0 and g.get("lag") == 0 and g.get("entries-read") == r.xlen(n["articles_stream"])
    return check


def age(r, n: dict, consumer: str | None = None) -> list[str]:
    """Make the messages pending on `consumer` (or on any) look idle for AGED_MS, as if their consumer had been
    silent that long: each is claimed by its own consumer with IDLE and JUSTID (no delivery counted). Returns
    their ids. Redis's idea of the time moves, so the test never waits for it."""
    pending = r.xpending_range(n["articles_stream"], GROUP, "-", "+", 10_000, consumername=consumer)
    for p in pending:
        r.xclaim(n["articles_stream"], GROUP, p["consumer"], 0, [p["message_id"]], idle=AGED_MS, justid=True)
    return [p["message_id"].decode() for p in pending]


def refreshed(r, n: dict, consumer: str, count: int):
    """A check: `count` messages pending, all on `consumer`, delivered once, and idle for less than half of
    LIVE_CLAIM_IDLE_MS: its heartbeat has refreshed them since `age` (nothing else makes them less idle)."""
    def check():
        pending = r.xpending_range(n["articles_stream"], GROUP, "-", "+", 10_000)
        return len(pending) == count and all(
            p["consumer"].decode() == consumer and p["times_delivered"] == 1
            and p["time_since_delivered"] < LIVE_CLAIM_IDLE_MS / 2 for p in pending)
    return check


def scoring_child(worker) -> psutil.Process:
    """The worker's scoring process (forked by its fork server, the child of the worker that runs forkserver)."""
    servers = [p for p in psutil.Process(worker.pid).children() if "forkserver" in " ".join(p.cmdline())]
    kids = [k for s in servers for k in s.children()]
    assert len(kids) == 1, kids
    return kids[0]


# ---- parsing ----------------------------------------------------------------------------------

def raw(fields: dict) -> dict:
    return {k if isinstance(k, bytes) else k.encode(): v if isinstance(v, bytes) else v.encode()
            for k, v in fields.items()}


def test_parse_message():
    ok = parse_message(Message("1-0", {b"id": b"a", b"text": "caf\u00e9".encode()}))
    assert (ok.id, ok.text, ok.error) == ("a", "caf\u00e9", None)
    js = parse_message(Message("1-1", {b"json": json.dumps({"id": 7, "text": "caf\u00e9", "title": "x"}).encode()}))
    assert (js.id, js.text) == ("7", "caf\u00e9") and js.digest == ok.digest  # same text, same digest
    odd = parse_message(Message("1-2", {b"id": b"b", b"text": b"\xff"}))
    assert odd.text is None and odd.error == "not UTF-8 text" and odd.digest
    for fields, words, aid in MALFORMED:
        with pytest.raises(BadMessage, match=words) as e:
            parse_message(Message("2-0", raw(fields)), max_bytes=MAX_MESSAGE)
        assert (e.value.article_id or "") == aid
    with pytest.raises(BadMessage, match="no fields"):
        parse_message(Message("4-0", {}))


# ---- real worker processes ----------------------------------------------------------------------

def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(r, redis_port_with_model, tmp_path):
    n, release = names("crash"), tmp_path / "release"
    ovr = overrides(redis_port_with_model, "crash")
    valid, bad = fill(r, n, 120, hold=(60, release))
    for i in (5, 6, 119):  # the same article sent again: still one verdict
        r.xadd(n["articles_stream"], {"id": f"art-{i:04d}", "text": text_for(i)})

    a = start_worker(tmp_path / "worker-a.log", *ovr, consumer="worker-a")
    try:
        a.wait_until(lambda: holds(release), WAIT, "worker A holding a batch")
        scorer = scoring_child(a)
        a.send(signal.SIGKILL)
        assert a.wait(30) == -signal.SIGKILL
        wait_ended(scorer.pid, WAIT, "the scoring process of the killed worker")  # it went with its owner
    finally:
        a.stop()
    held = r.xpending_range(n["articles_stream"], GROUP, "-", "+", 1000)
    assert held and {p["consumer"] for p in held} == {b"worker-a"}
    assert r.xlen(n["verdicts_stream"]) < len(valid)

    release.touch()
    b = start_worker(tmp_path / "worker-b.log", *ovr, consumer="worker-b")
    try:
        b.wait_until(drained(r, n), WAIT, "worker B drains the stream", interval=0.2)
        assert "claimed" in b.output()
        records = assert_ledger(r, n, valid, bad)
        for _, rid, words in ODD:
            assert rid not in records or (records[rid]["score"] is None and words in records[rid]["error"])
        assert all(records[i]["error"] is None for i in valid if i.startswith("art-"))
        dead = entries(r, n["dead_stream"])
        assert all(d["error"] and d["stream"] == n["articles_stream"] for d in dead)
        b.send(signal.SIGTERM)  # idle, blocked in XREADGROUP: exits 0 within block_ms
        assert b.wait(WAIT) == 0
    finally:
        b.stop()


def test_poison_messages_of_every_kind_are_dead_lettered_once_and_spare_their_batch(r, redis_port_with_model,
                                                                                     tmp_path):
    n = names("poison-all")
    valid, bad = set(), []
    for i, (fields, _, _) in enumerate(MALFORMED):  # each in a batch with valid messages and odd texts
        bad.append(r.xadd(n["articles_stream"], fields).decode())
        fields, rid, _ = ODD[i % len(ODD)]
        r.xadd(n["articles_stream"], fields)
        r.xadd(n["articles_stream"], {"id": f"ok-{i}", "text": text_for(i)})
        valid |= {rid, f"ok-{i}"}
    w = start_worker(tmp_path / "worker.log", *overrides(redis_port_with_model, "poison-all"), consumer="w")
    try:
        w.wait_until(drained(r, n), WAIT, "the worker drains the stream", interval=0.2)
        assert_ledger(r, n, valid, bad)
        errors = {d["message_id"]: d["error"] for d in entries(r, n["dead_stream"])}
        for mid, (_, words, _) in zip(bad, MALFORMED):
            assert words in errors[mid]
        w.send(signal.SIGTERM)
        assert w.wait(WAIT) == 0
        assert "0 failed batches" in w.output() and " 0 claimed" in w.output()  # no batch was lost to a poison
    finally:
        w.stop()


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(r, redis_port_with_model, tmp_path):
    n, release = names("term"), tmp_path / "release"
    fill(r, n, 64, hold=(20, release), bad_every=0)
    c = start_worker(tmp_path / "worker-c.log", *overrides(redis_port_with_model, "term"), consumer="worker-c")
    try:
        c.wait_until(lambda: holds(release), WAIT, "worker C holding its second batch")
        c.send(signal.SIGTERM)
        c.wait_until(lambda: "finishing the batch in hand" in c.output(), WAIT, "SIGTERM noted")
        release.touch()
        assert c.wait(WAIT) == 0
        g = group_info(r, n["articles_stream"])
        assert g["pending"] == 0, "the batch in hand was left unacknowledged"
        assert g["lag"] > 0, "the worker went on reading after SIGTERM"
        assert r.xlen(n["verdicts_stream"]) == g["entries-read"] == 32
    finally:
        c.stop()


def test_redis_killed_and_restarted_mid_drain_loses_nothing(own_redis, tmp_path):
    server, port, client = own_redis
    n, release = names("restart"), tmp_path / "release"
    valid, bad = fill(client, n, 80, hold=(40, release))
    w = start_worker(tmp_path / "worker.log", *overrides(port, "restart", redis_timeout_s=2), consumer="w")
    try:
        w.wait_until(lambda: holds(release), WAIT, "the worker holding a batch")
        before = client.xlen(n["verdicts_stream"])
        server.send(signal.SIGKILL)  # Redis dies with a batch in hand and verdicts written
        server.wait(30)
        server, _ = start_redis(tmp_path / "redis", persistent=True, port=port)  # same files: the AOF
        assert client.xlen(n["verdicts_stream"]) == before and before > 0
        release.touch()
        w.wait_until(drained(client, n), WAIT, "the worker drains the stream after the restart", interval=0.2)
        assert_ledger(client, n, valid, bad)
        w.send(signal.SIGTERM)
        assert w.wait(WAIT) == 0
    finally:
        w.stop()
        server.stop()


def test_two_live_workers_share_the_stream_and_never_take_each_others_batch(r, redis_port_with_model, tmp_path):
    n, release = names("pair"), tmp_path / "release"
    ovr = overrides(redis_port_with_model, "pair", claim_idle_ms=LIVE_CLAIM_IDLE_MS)
    workers = {c: start_worker(tmp_path / f"{c}.log", *ovr, consumer=c) for c in ("one", "two")}
    try:
        for c, w in workers.items():
            w.wait_until(lambda w=w, c=c: f"worker {c} reading" in w.output(), WAIT, f"worker {c} ready")
        r.xadd(n["articles_stream"], {"id": "held", "text": hold_text(release)})
        workers["one"].wait_until(lambda: holds(release), WAIT, "one worker holding the first message")
        holder = r.xpending_range(n["articles_stream"], GROUP, "-", "+", 10)[0]["consumer"].decode()
        other = ({"one", "two"} - {holder}).pop()
        valid, bad = fill(r, n, 60)
        # the holder keeps its message until the other worker has drained the rest, however long that takes
        workers[other].wait_until(lambda: group_info(r, n["articles_stream"])["lag"] == 0
                                  and group_info(r, n["articles_stream"])["pending"] == 1, WAIT,
                                  "the other worker drains the rest")
        release.touch()
        workers[holder].wait_until(drained(r, n), WAIT, "the held message answered")
        assert_ledger(r, n, valid | {"held"}, bad)
        by = {v["id"]: v["consumer"] for v in entries(r, n["verdicts_stream"])}
        assert by.pop("held") == holder and set(by.values()) == {other}
        assert holds(release) == 1  # scored once: never claimed from its live worker
        for w in workers.values():
            assert "claimed" not in w.output().replace(" 0 claimed", "")
    finally:
        for w in workers.values():
            w.stop()


def test_a_text_over_budget_gets_an_error_verdict_and_its_worker_keeps_it(r, redis_port_with_model, tmp_path):
    """The held text outlasts its budget, and its worker's heartbeat keeps it from the other live worker all
    the while (scoring is in a child process, so nothing starves the heartbeat thread)."""
    n, never = names("budget"), tmp_path / "never-released"
    ovr = overrides(redis_port_with_model, "budget", "scoring.budget_s=20", "scoring.budget_s_per_100k_chars=0",
                    claim_idle_ms=LIVE_CLAIM_IDLE_MS)  # held for two budgets: over 4 x claim_idle_ms
    workers = {c: start_worker(tmp_path / f"{c}.log", *ovr, consumer=c) for c in ("one", "two")}
    try:
        for c, w in workers.items():
            w.wait_until(lambda w=w, c=c: f"worker {c} reading" in w.output(), WAIT, f"worker {c} ready")
        pipe = r.pipeline(transaction=True)  # one batch: three articles and the text that never finishes
        for i in range(3):
            pipe.xadd(n["articles_stream"], {"id": f"fine-{i}", "text": text_for(i + 1)})
        pipe.xadd(n["articles_stream"], {"id": "slow", "text": hold_text(never)})
        pipe.execute()
        workers["one"].wait_until(drained(r, n), WAIT, "all four answered")
        records = assert_ledger(r, n, {"fine-0", "fine-1", "fine-2", "slow"}, [])
        assert records["slow"]["error"].startswith("scoring took longer than 20.0 s") and records["slow"]["score"] is None
        assert all(records[f"fine-{i}"]["error"] is None for i in range(3))
        assert holds(never) == 2  # in its batch, then alone, by the same worker: never claimed by the other
        assert len({v["consumer"] for v in entries(r, n["verdicts_stream"])}) == 1
        for w in workers.values():
            assert "claimed" not in w.output().replace(" 0 claimed", "")
    finally:
        for w in workers.values():
            w.stop()


def test_a_failing_verdict_write_leaves_messages_pending_until_it_can_be_written(r, redis_port_with_model, tmp_path):
    n = names("wrongtype")
    r.set(n["verdicts_stream"], "not a stream")  # every verdict write fails (WRONGTYPE)
    valid, bad = fill(r, n, 40, bad_every=10)
    w = start_worker(tmp_path / "worker.log", *overrides(redis_port_with_model, "wrongtype", max_attempts=1000),
                     consumer="w")
    try:
        w.wait_until(lambda: "verdict not written" in w.output() and "WRONGTYPE" in w.output(), WAIT,
                     "a verdict write failing")
        # nothing half-written, nothing acknowledged unanswered
        assert r.xlen(n["review_stream"]) == 0 and not r.keys(n["seen_prefix"] + "*")
        g = group_info(r, n["articles_stream"])
        assert g["pending"] + g["lag"] >= len(valid)
        r.delete(n["verdicts_stream"])  # repaired: the pending messages are claimed again and answered
        w.wait_until(drained(r, n), WAIT, "the worker drains the stream once writes succeed", interval=0.2)
        assert_ledger(r, n, valid, bad)
    finally:
        w.stop()


def test_a_text_that_kills_the_scoring_process_is_retried_then_dead_lettered(r, redis_port_with_model, tmp_path):
    n = names("crashy")
    valid, bad = fill(r, n, 20, bad_every=0)
    bad.append(r.xadd(n["articles_stream"], {"id": "crasher", "text": f"{PARAGRAPHS[0]} {DIE}"}).decode())
    w = start_worker(tmp_path / "worker.log", *overrides(redis_port_with_model, "crashy", max_attempts=2),
                     consumer="w")
    try:
        w.wait_until(drained(r, n), WAIT, "the worker drains the stream", interval=0.2)
        assert_ledger(r, n, valid, bad)
        (dead,) = entries(r, n["dead_stream"])
        assert dead["id"] == "crasher" and "gave up after 3 deliveries" in dead["error"]
        assert "killed the scoring process" in dead["error"]
    finally:
        w.stop()


def test_sigterm_while_redis_is_paused_exits_and_loses_nothing(own_redis, tmp_path):
    server, port, client = own_redis
    n, release = names("paused"), tmp_path / "release"
    valid, bad = fill(client, n, 60, hold=(20, release))
    ovr = overrides(port, "paused", redis_timeout_s=1)
    w = start_worker(tmp_path / "worker.log", *ovr, consumer="w")
    try:
        w.wait_until(lambda: holds(release), WAIT, "the worker holding a batch")
        server.send(signal.SIGSTOP)
        release.touch()  # its verdict writes now wait on a Redis that does not answer
        w.send(signal.SIGTERM)
        assert w.wait(WAIT) == 0
        assert psutil.Process(server.pid).status() == psutil.STATUS_STOPPED  # it exited while Redis was paused
        assert "redis unavailable" in w.output()
    finally:
        w.stop()
        server.send(signal.SIGCONT)
    w2 = start_worker(tmp_path / "worker-2.log", *ovr, consumer="w2")
    try:
        w2.wait_until(drained(client, n), WAIT, "another worker drains the stream", interval=0.2)
        assert_ledger(client, n, valid, bad)
    finally:
        w2.stop()


# ---- in-process steps -------------------------------------------------------------------------

def make_worker(port, prefix, detector, consumer="w", **extra) -> Worker:
    cfg = settings.load_service(None, overrides(port, prefix, **extra))
    w = Worker(cfg, InProcess(detector, cfg.max_text_bytes) if detector else None, consumer=consumer)
    w.ensure_group()
    return w


def test_message_failing_max_attempts_goes_dead(r, redis_port, detector):
    n = names("attempts")
    w = make_worker(redis_port, "attempts", detector, max_attempts=2)
    m1 = r.xadd(n["articles_stream"], {"id": "p1", "text": SPUN}).decode()
    m2 = r.xadd(n["articles_stream"], {"id": "p2", "text": SPUN + " Again."}).decode()
    # two consumers took them and died: p1 was delivered twice, p2 once
    r.xreadgroup(GROUP, "ghost-1", {n["articles_stream"]: ">"}, count=10)
    r.xclaim(n["articles_stream"], GROUP, "ghost-2", 0, [m1])
    assert sorted(age(r, n)) == sorted([m1, m2])  # then nothing was heard of them
    msgs = w.claim_stale()
    assert {m.message_id: m.deliveries for m in msgs} == {m1: 3, m2: 2}
    w.process(msgs)
    dead = entries(r, n["dead_stream"])
    assert [(d["message_id"], d["id"], d["deliveries"]) for d in dead] == [(m1, "p1", "3")]
    assert "gave up after 3 deliveries" in dead[0]["error"] and "max_attempts 2" in dead[0]["error"]
    assert [v["id"] for v in entries(r, n["verdicts_stream"])] == ["p2"]
    assert group_info(r, n["articles_stream"])["pending"] == 0


def test_a_write_that_keeps_failing_is_dead_lettered_with_its_error(r, redis_port, detector):
    n = names("badreview")
    r.set(n["review_stream"], "not a stream")  # the review write of a spun record fails: nothing may be written
    w = make_worker(redis_port, "badreview", detector, max_attempts=2)
    r.xadd(n["articles_stream"], {"id": "s1", "text": SPUN})
    shipped, detector.threshold = detector.threshold, 0.0  # everything is spun
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            w.process(w.read_new(100))
        assert r.xlen(n["verdicts_stream"]) == 0 and not r.exists(n["seen_prefix"] + "s1")  # no half result
        assert group_info(r, n["articles_stream"])["pending"] == 1
        for _ in range(2):  # claimed again (a 2nd and a 3rd delivery): fails, then goes dead
            age(r, n)
            try:
                w.process(w.claim_stale())
            except redis.ResponseError:
                pass
    finally:
        detector.threshold = shipped
    (dead,) = entries(r, n["dead_stream"])
    assert dead["id"] == "s1" and "verdict not written" in dead["error"] and "WRONGTYPE" in dead["error"]
    assert group_info(r, n["articles_stream"])["pending"] == 0 and r.xlen(n["verdicts_stream"]) == 0


def test_a_resent_id_gets_a_new_verdict_only_when_its_text_changed(r, redis_port, detector):
    n = names("idem")
    w = make_worker(redis_port, "idem", detector, **{"retention.seen_ttl_s": 3600})
    for _ in range(2):  # twice in one batch
        r.xadd(n["articles_stream"], {"id": "same", "text": SPUN})
    assert w.run_once(block_ms=100) == 2
    r.xadd(n["articles_stream"], {"json": json.dumps({"id": "same", "text": SPUN})})  # and again later
    assert w.run_once(block_ms=100) == 1
    assert [v["id"] for v in entries(r, n["verdicts_stream"])] == ["same"]
    assert w.counts.verdicts == 1 and w.counts.duplicates == 2
    r.xadd(n["articles_stream"], {"id": "same", "text": PARAGRAPHS[0]})  # corrected: scored again
    assert w.run_once(block_ms=100) == 1
    verdicts = entries(r, n["verdicts_stream"])
    assert [v["id"] for v in verdicts] == ["same", "same"] and w.counts.verdicts == 2
    assert r.get(n["seen_prefix"] + "same").decode().endswith(" " + r.xrange(n["verdicts_stream"])[-1][0].decode())
    assert 0 < r.ttl(n["seen_prefix"] + "same") <= 3600
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
    verdicts = entries(r, n["verdicts_stream"])
    assert [(v["id"], v["label"], v["consumer"]) for v in verdicts] == [("all-1", "spun", "w"), ("none-1", "clean", "w")]
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


def test_verdicts_of_texts_that_cannot_be_scored_are_the_defined_error_record(r, redis_port):
    # texts that never reach a model (undecodable bytes are known before scoring): a Detector without one will do
    n, det = names("odd"), Detector("tagger", facts={"name": "unspin", "version": "7"})
    w = make_worker(redis_port, "odd", det)
    for fields, _, _ in ODD[:4]:
        r.xadd(n["articles_stream"], fields)
    assert w.run_once(block_ms=100) == 4
    verdicts = {v["id"]: json.loads(v["record"]) for v in entries(r, n["verdicts_stream"])}
    assert list(verdicts) == [rid for _, rid, _ in ODD[:4]]
    for rid, rec in verdicts.items():
        assert ScoreRecord.model_validate(rec).model_dump() == rec
        assert rec == error_record(rid, rec["error"], det.threshold, det.model_info, det.mode)
    assert verdicts["odd-bytes"]["error"] == "not UTF-8 text"


def test_a_batch_in_hand_is_not_claimed_however_long_it_takes(r, redis_port_with_model, tmp_path):
    """A worker scoring a batch keeps refreshing it, so a live worker looking for the messages of dead ones never
    takes it. Nothing waits for time to pass: the test makes the held batch look idle for 10 x claim_idle_ms
    (`age`: what a dead worker's messages look like), waits until the holder's heartbeat has refreshed it, and
    then has the other worker look; three times over, the batch held all the while."""
    n, release = names("slow"), tmp_path / "release"
    pipe = r.pipeline(transaction=True)  # one batch: seven articles and a held one
    for i in range(7):
        pipe.xadd(n["articles_stream"], {"id": f"s{i}", "text": text_for(i)})
    pipe.xadd(n["articles_stream"], {"id": "s7", "text": hold_text(release)})
    pipe.execute()
    busy = start_worker(tmp_path / "busy.log", *overrides(redis_port_with_model, "slow",
                                                          claim_idle_ms=LIVE_CLAIM_IDLE_MS), consumer="busy")
    other = make_worker(redis_port_with_model, "slow", None, consumer="other", claim_idle_ms=LIVE_CLAIM_IDLE_MS)
    try:
        busy.wait_until(lambda: holds(release), WAIT, "the worker holding the batch")
        for _ in range(3):
            assert len(age(r, n)) == 8  # the whole batch is in hand
            busy.wait_until(refreshed(r, n, "busy", 8), WAIT, "the holder's heartbeat refreshing its batch")
            assert other.claim_stale() == []
        release.touch()
        busy.wait_until(drained(r, n), WAIT, "the batch answered")
        assert_ledger(r, n, {f"s{i}" for i in range(8)}, [])
        assert {v["consumer"] for v in entries(r, n["verdicts_stream"])} == {"busy"}
        assert holds(release) == 1  # scored once
        assert "claimed" not in busy.output().replace(" 0 claimed", "")
    finally:
        busy.stop()


def test_retention_trims_every_stream_and_never_an_unanswered_message(tmp_path, detector):
    server, port = start_redis(tmp_path / "redis")
    r = redis.Redis(port=port)
    try:
        r.config_set("stream-node-max-entries", 4)  # MAXLEN ~ / MINID ~ trim whole nodes: small ones here
        n = names("keep")
        w = make_worker(port, "keep", detector, **{"retention.articles_keep_s": 0, "retention.verdicts_maxlen": 10,
                                                   "retention.review_maxlen": 5, "retention.dead_maxlen": 5,
                                                   "retention.seen_ttl_s": 60})
        valid, bad = fill(r, n, 48, bad_every=4)
        shipped, detector.threshold = detector.threshold, 0.0  # everything is spun: review fills up too
        try:
            while w.run_once(block_ms=100):
                pass
        finally:
            detector.threshold = shipped
        assert w.counts.verdicts == len(valid) and w.counts.dead == len(bad)
        assert 10 <= r.xlen(n["verdicts_stream"]) < 10 + 4
        assert 5 <= r.xlen(n["review_stream"]) < 5 + 4 and 5 <= r.xlen(n["dead_stream"]) < 5 + 4
        assert all(0 < r.ttl(n["seen_prefix"] + i) <= 60 for i in valid)
        late = r.xadd(n["articles_stream"], {"id": "late", "text": SPUN})  # read by a consumer that then died
        r.xreadgroup(GROUP, "ghost", {n["articles_stream"]: ">"}, count=1)
        unread = r.xadd(n["articles_stream"], {"id": "unread", "text": SPUN})
        w.trim_articles()
        left = [mid for mid, _ in r.xrange(n["articles_stream"])]
        assert late in left and unread in left and len(left) < 4 + 2  # handled ones went, the rest stayed
    finally:
        r.close()
        server.stop()


def test_worker_settings_errors_name_the_key():
    from data.configfile import ConfigError

    for override, key in [("worker.redis_timeout_s=0", r"worker\.redis_timeout_s"),
                          ("worker.retention.verdicts_maxlen=0", r"worker\.retention\.verdicts_maxlen"),
                          ("worker.retention.articles_keep_s=-1", r"worker\.retention\.articles_keep_s"),
                          ("worker.retention.seen_tll_s=5", r"retention\.seen_tll_s"),
                          ("worker.max_message_bytes=0", r"worker\.max_message_bytes"),
                          ('worker.seen_prefix=""', r"worker\.seen_prefix")]:
        with pytest.raises(ConfigError, match=key):
            settings.load_service(None, [override])
