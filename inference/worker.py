"""Queue worker: score articles from a Redis stream, `python -m inference.worker` (`make worker`).

Reads `articles_stream` (fields `id` and `text`, or `json` holding {"id": ..., "text": ...}) as a member
of consumer group `group`, and for each article writes its score record to `verdicts_stream`, and to
`review_stream` as well when it is labelled spun (for human moderators). Guarantees:
  - at least once, exactly one verdict: a message is acknowledged only in the same atomic step (a
    Lua script) that writes its verdict, and an article id that already has a verdict (hash
    `seen_key`: id -> verdict entry id) is acknowledged without a second one;
  - nothing is lost when a worker dies: its pending messages are claimed by live workers once idle
    for `claim_idle_ms` (XAUTOCLAIM; a restarted worker with the same consumer name reads its own
    pending messages first). A live worker keeps the batch it is scoring from looking idle, however
    long that takes. A redelivered message is scored on its own, so one poison message cannot take
    its batch down with it;
  - a message that cannot be parsed (no id, no text, bad JSON, not UTF-8 id), or that has been
    delivered more than `max_attempts` times, goes to `dead_stream` with its error, and is acknowledged;
  - an odd text (empty, too long, binary, not UTF-8) is not a bad message: it gets a verdict whose
    record has `error` set, as everywhere in unspin;
  - SIGTERM/SIGINT: the batch in hand is finished and acknowledged, then the worker exits 0.
Settings: configs/service.yaml (`worker:` and the top-level keys) and the inference section, configs/inference.yaml.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from inference import settings
from inference.inputs import _clean_id
from inference.settings import ServiceConfig

log = logging.getLogger("unspin.worker")

# Acknowledge a message and, unless its id already has a verdict, write the verdict (and the review
# entry for spun records), atomically. Returns 1 (written), 0 (duplicate id: acknowledged only), -1
# (the message was no longer pending: another consumer finished it first; nothing written).
# KEYS: seen, verdicts, review, articles. ARGV: group, message id, article id, record JSON, label, spun.
WRITE_VERDICT = """
if redis.call('XACK', KEYS[4], ARGV[1], ARGV[2]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 1 then return 0 end
local vid = redis.call('XADD', KEYS[2], '*', 'id', ARGV[3], 'label', ARGV[5], 'message_id', ARGV[2],
                       'record', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[3], vid)
if ARGV[6] == '1' then
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[3], 'label', ARGV[5], 'message_id', ARGV[2], 'verdict_id', vid,
             'record', ARGV[4])
end
return 1
"""

# Acknowledge a message and write it to the dead-letter stream, atomically (nothing if no longer pending).
# KEYS: dead, articles. ARGV: group, message id, article id, error, deliveries, fields JSON, stream.
WRITE_DEAD = """
if redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]) == 0 then return -1 end
redis.call('XADD', KEYS[1], '*', 'message_id', ARGV[2], 'id', ARGV[3], 'error', ARGV[4], 'deliveries', ARGV[5],
           'stream', ARGV[7], 'fields', ARGV[6])
return 1
"""

# Delete a consumer only if it holds no pending message (its pending entries would go with it).
# KEYS: articles. ARGV: group, consumer. Returns 0 (deleted) or -1 (it holds messages: kept).
DROP_CONSUMER = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""

# Reset the idle time of messages still pending on this consumer, without counting a delivery (JUSTID):
# the heartbeat of a batch being scored. One claimed by another consumer meanwhile is left to it.
# KEYS: articles. ARGV: group, consumer, message ids... Returns how many were refreshed.
KEEP_PENDING = """
local kept = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept = kept + 1
  end
end
return kept
"""

MAX_DEAD_FIELD_CHARS = 4096
MAX_LAST_ERRORS = 10_000


class BadMessage(ValueError):
    """A message that cannot be turned into (id, text): it goes to the dead-letter stream."""

    def __init__(self, error: str, article_id: str | None = None):
        super().__init__(error)
        self.article_id = article_id


@dataclass
class Message:
    message_id: str
    fields: dict  # raw field bytes -> value bytes, as Redis holds them
    deliveries: int = 1


@dataclass
class Article:
    message: Message
    id: str
    text: str | None
    error: str | None = None  # why the text cannot be scored (still gets a verdict, with error set)


def _decode(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadMessage(f"{what} is not UTF-8") from None


def parse_message(message: Message, max_id_chars: int = 512) -> Article:
    """The article a stream message carries; raises BadMessage when there is none."""
    raw = message.fields
    if not raw:
        raise BadMessage("empty message (no fields)")
    keys = {_decode(k, "a field name") if isinstance(k, bytes) else str(k): v for k, v in raw.items()}
    if "json" in keys:
        try:
            obj = json.loads(_decode(keys["json"], "field json"))
        except json.JSONDecodeError as e:
            raise BadMessage(f"field json is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise BadMessage(f"field json must hold an object with id and text, got {type(obj).__name__}")
        rid, text, text_present = obj.get("id"), obj.get("text"), "text" in obj
    elif "id" in keys or "text" in keys:
        rid = _decode(keys["id"], "field id") if "id" in keys else None
        text_present = "text" in keys
        text = keys.get("text")
    else:
        raise BadMessage(f"message has neither id and text fields nor a json field (fields: {', '.join(sorted(keys))})")
    clean = _clean_id(rid)
    if clean is None:
        raise BadMessage("missing id" if rid is None else f"id must be a non-empty string or integer, got {rid!r}"[:300])
    if len(clean) > max_id_chars:
        raise BadMessage(f"id is {len(clean)} characters, over the limit of {max_id_chars}")
    if not text_present or text is None:
        raise BadMessage("missing text", clean)
    error = None
    if isinstance(text, bytes):  # a Redis field value: undecodable bytes are an odd text, not a bad message
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text, error = None, "not UTF-8 text"
    elif not isinstance(text, str):
        raise BadMessage(f"text is not a string ({type(text).__name__})", clean)
    return Article(message, clean, text, error)


def _printable_fields(fields: dict) -> str:
    out = {}
    for k, v in fields.items():
        k = k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else str(k)
        v = v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
        out[k] = v if len(v) <= MAX_DEAD_FIELD_CHARS else v[:MAX_DEAD_FIELD_CHARS] + f"... ({len(v)} characters)"
    return json.dumps(out, ensure_ascii=False)


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Counts:
    read: int = 0
    verdicts: int = 0
    spun: int = 0
    duplicates: int = 0
    dead: int = 0
    stale: int = 0
    failed_batches: int = 0
    claimed: int = 0
    started: float = field(default_factory=time.time)

    def summary(self) -> str:
        secs = max(time.time() - self.started, 1e-9)
        return (f"{self.read} read, {self.verdicts} verdicts ({self.spun} spun), {self.duplicates} duplicate ids, "
                f"{self.dead} dead-lettered, {self.claimed} claimed from other consumers, {self.stale} finished "
                f"elsewhere, {self.failed_batches} failed batches; {self.verdicts / secs:.2f} verdicts/s")


class Worker:
    """One consumer of the articles stream. `run(stop)` loops until `stop` is set; the steps
    (`ensure_group`, `read_own_pending`, `claim_stale`, `read_new`, `process`) can be called alone."""

    def __init__(self, cfg: ServiceConfig, detector, client: redis.Redis | None = None, consumer: str | None = None):
        self.cfg, self.w, self.detector = cfg, cfg.worker, detector
        self.redis = client or redis.Redis.from_url(self.w.redis_url, decode_responses=False,
                                                    health_check_interval=30, socket_keepalive=True)
        self.consumer = consumer or self.w.consumer or default_consumer()
        self.write_verdict = self.redis.register_script(WRITE_VERDICT)
        self.write_dead = self.redis.register_script(WRITE_DEAD)
        self.drop_consumer = self.redis.register_script(DROP_CONSUMER)
        self.keep_pending = self.redis.register_script(KEEP_PENDING)
        self.counts = Counts()
        self.last_errors: dict[str, str] = {}  # message id -> error of a failed attempt in this process
        self.claim_cursor = "0-0"
        self.next_claim = 0.0

    # ---- reading ----------------------------------------------------------------------------
    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.w.articles_stream, self.w.group, id=self.w.group_start_id, mkstream=True)
            log.info("created consumer group %s on %s", self.w.group, self.w.articles_stream)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _messages(self, entries, deliveries: int | None = None) -> list[Message]:
        return [Message(mid.decode() if isinstance(mid, bytes) else mid, fields or {}, deliveries or 1)
                for mid, fields in entries]

    def read_new(self, block_ms: int | None = None) -> list[Message]:
        """Up to batch_size messages never delivered to the group, waiting up to block_ms for them."""
        reply = self.redis.xreadgroup(self.w.group, self.consumer, {self.w.articles_stream: ">"},
                                      count=self.w.batch_size, block=block_ms)
        return self._messages(reply[0][1]) if reply else []

    def read_own_pending(self) -> list[Message]:
        """Messages delivered to this consumer name and never acknowledged (a restart under the same name)."""
        reply = self.redis.xreadgroup(self.w.group, self.consumer, {self.w.articles_stream: "0"},
                                      count=self.w.batch_size)
        msgs = self._messages(reply[0][1]) if reply else []
        self._fill_deliveries(msgs)
        return msgs

    def claim_stale(self) -> list[Message]:
        """Messages pending for longer than claim_idle_ms on any consumer (a dead one), now ours."""
        cursor, entries, *_ = self.redis.xautoclaim(self.w.articles_stream, self.w.group, self.consumer,
                                                    self.w.claim_idle_ms, start_id=self.claim_cursor,
                                                    count=self.w.batch_size)
        self.claim_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        msgs = self._messages(entries)
        self._fill_deliveries(msgs)
        if msgs:
            self.counts.claimed += len(msgs)
            log.info("claimed %d idle pending messages (%s...)", len(msgs), msgs[0].message_id)
        return msgs

    def prune_consumers(self) -> list[str]:
        """Forget other consumers with nothing pending, idle for prune_idle_ms (workers that exited or were
        restarted under a new name). A live one that is only quiet is harmless to drop: its next read
        adds it back."""
        gone = []
        for c in self.redis.xinfo_consumers(self.w.articles_stream, self.w.group):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if (name != self.consumer and c["pending"] == 0 and c["idle"] >= self.w.prune_idle_ms
                    and self.drop_consumer(keys=[self.w.articles_stream], args=[self.w.group, name]) == 0):
                gone.append(name)
        if gone:
            log.info("removed %d idle consumers with nothing pending: %s", len(gone), ", ".join(gone[:10]))
        return gone

    def _fill_deliveries(self, msgs: list[Message]) -> None:
        if not msgs:
            return
        pipe = self.redis.pipeline(transaction=False)
        for m in msgs:
            pipe.xpending_range(self.w.articles_stream, self.w.group, m.message_id, m.message_id, 1)
        for m, rows in zip(msgs, pipe.execute()):
            m.deliveries = int(rows[0]["times_delivered"]) if rows else m.deliveries

    # ---- processing ---------------------------------------------------------------------------
    def process(self, messages: list[Message]) -> None:
        """Verdicts (or dead letters) for `messages`, each acknowledged with its result."""
        if not messages:
            return
        self.counts.read += len(messages)
        fresh = [m for m in messages if m.deliveries <= 1]
        suspects = [m for m in messages if m.deliveries > 1]
        if fresh:
            self._process_batch(fresh)
        for m in suspects:  # redelivered: maybe it killed its last consumer; alone, it can only take itself down
            self._process_batch([m])

    def _process_batch(self, messages: list[Message]) -> None:
        try:
            self._score_and_write(messages)
        except redis.RedisError:
            raise  # the loop waits for Redis; the messages stay pending and come back
        except Exception as e:
            self.counts.failed_batches += 1
            err = f"{type(e).__name__}: {e}"
            log.exception("batch of %d messages failed (left pending for redelivery): %s", len(messages), err)
            for m in messages:
                self.last_errors[m.message_id] = err
            while len(self.last_errors) > MAX_LAST_ERRORS:  # messages finished elsewhere are never popped here
                del self.last_errors[next(iter(self.last_errors))]

    def _score_and_write(self, messages: list[Message]) -> None:
        from inference.score import score_items

        articles: list[Article] = []
        dead: list[tuple[Message, str | None, str]] = []
        for m in messages:
            if not m.fields:  # deleted from the stream while pending: nothing left to do
                self.redis.xack(self.w.articles_stream, self.w.group, m.message_id)
                continue
            if m.deliveries > self.w.max_attempts:
                why = self.last_errors.get(m.message_id) or "its consumer died or failed while scoring it"
                aid = None
                try:
                    aid = parse_message(m, self.cfg.max_id_chars).id
                except BadMessage:
                    pass
                dead.append((m, aid, (f"gave up after {m.deliveries} deliveries (max_attempts "
                                     f"{self.w.max_attempts}): {why}")))
                continue
            try:
                articles.append(parse_message(m, self.cfg.max_id_chars))
            except BadMessage as e:
                dead.append((m, e.article_id, str(e)))
        self._dead_letter(dead)
        if not articles:
            return
        seen = self.redis.hmget(self.w.seen_key, [a.id for a in articles])
        done = [a for a, s in zip(articles, seen) if s is not None]
        todo = [a for a, s in zip(articles, seen) if s is None]
        if done:  # a redelivered or re-sent article: its verdict exists, acknowledge only
            self.redis.xack(self.w.articles_stream, self.w.group, *[a.message.message_id for a in done])
            self.counts.duplicates += len(done)
        if not todo:
            return
        with self.holding([a.message for a in todo]):
            records = score_items(self.detector, [(a.id, a.text) for a in todo], self.cfg.max_text_bytes)
        for a, rec in zip(todo, records):
            if a.error:  # known before scoring (undecodable text bytes)
                rec.update(score=None, label=None, sentences=[], spans=[], error=a.error)
        pipe = self.redis.pipeline(transaction=False)
        keys = [self.w.seen_key, self.w.verdicts_stream, self.w.review_stream, self.w.articles_stream]
        for a, rec in zip(todo, records):
            label = rec.get("label") or ""
            body = json.dumps(rec, ensure_ascii=False, allow_nan=False, default=_plain)
            self.write_verdict(keys=keys, args=[self.w.group, a.message.message_id, a.id, body, label,
                                                "1" if label == "spun" else "0"], client=pipe)
        for a, rec, result in zip(todo, records, pipe.execute()):
            self.last_errors.pop(a.message.message_id, None)
            if result == 1:
                self.counts.verdicts += 1
                self.counts.spun += rec.get("label") == "spun"
            elif result == 0:
                self.counts.duplicates += 1
            else:
                self.counts.stale += 1

    @contextmanager
    def holding(self, messages: list[Message]):
        """While `messages` are being scored, refresh their idle time every claim_idle_ms / 3. A batch
        scoring longer than claim_idle_ms would otherwise be claimed by live workers as if this one had
        died: scored again, and dead-lettered without a verdict once claimed past max_attempts."""
        done = threading.Event()
        ids = [m.message_id for m in messages]

        def beat():
            while not done.wait(max(self.w.claim_idle_ms / 3, 10) / 1000):
                try:
                    self.keep_pending(keys=[self.w.articles_stream], args=[self.w.group, self.consumer, *ids])
                except redis.RedisError as e:  # the batch's own writes will meet the outage
                    log.warning("could not refresh the %d messages in hand: %s", len(ids), e)

        beater = threading.Thread(target=beat, name="unspin-keep-pending", daemon=True)
        beater.start()
        try:
            yield
        finally:
            done.set()
            beater.join()

    def _dead_letter(self, dead: list[tuple[Message, str | None, str]]) -> None:
        if not dead:
            return
        pipe = self.redis.pipeline(transaction=False)
        for m, aid, error in dead:
            log.warning("dead-lettering %s (id %s): %s", m.message_id, aid, error)
            self.write_dead(keys=[self.w.dead_stream, self.w.articles_stream],
                            args=[self.w.group, m.message_id, aid or "", error, m.deliveries,
                                  _printable_fields(m.fields), self.w.articles_stream], client=pipe)
        for (m, _, _), result in zip(dead, pipe.execute()):
            self.last_errors.pop(m.message_id, None)
            if result == 1:
                self.counts.dead += 1
            else:
                self.counts.stale += 1

    # ---- the loop -------------------------------------------------------------------------------
    def run_once(self, block_ms: int | None = None) -> int:
        """One step: claim idle pending messages when due, else read new ones. Returns messages handled."""
        now = time.monotonic()
        if now >= self.next_claim:
            msgs = self.claim_stale()
            # a full page or an unfinished scan: look again at once; else wait claim_interval_ms
            more = self.claim_cursor != "0-0"
            self.next_claim = now if more else now + self.w.claim_interval_ms / 1000
            if not more:
                self.prune_consumers()
            if msgs:
                self.process(msgs)
                return len(msgs)
        msgs = self.read_new(self.w.block_ms if block_ms is None else block_ms)
        self.process(msgs)
        return len(msgs)

    def run(self, stop: threading.Event) -> Counts:
        """Loop until `stop` is set (between batches). Redis outages are waited out."""
        backoff, last_log, started = 0.5, time.monotonic(), False
        while not stop.is_set():
            try:
                if not started:
                    self.ensure_group()
                    while not stop.is_set() and (own := self.read_own_pending()):
                        self.process(own)
                    started = True
                    log.info("worker %s reading %s as group %s", self.consumer, self.w.articles_stream, self.w.group)
                self.run_once()
                backoff = 0.5
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis unavailable (%s); retrying in %.1f s", e, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):
                    log.warning("consumer group %s is gone; creating it again", self.w.group)
                    started = False
                else:  # e.g. OOM, READONLY replica, a key of the wrong type: say so, keep trying
                    log.error("redis error (%s); retrying in %.1f s", e, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
            if time.monotonic() - last_log >= self.w.log_every_s:
                log.info("%s", self.counts.summary())
                last_log = time.monotonic()
        log.info("stopping: %s", self.counts.summary())
        return self.counts


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="unspin queue worker: score articles from a Redis stream")
    settings.add_common_args(ap, "service config (default configs/service.yaml; the model and how it runs: "
                                 "configs/inference.yaml)")
    ap.add_argument("--redis-url", help="overrides worker.redis_url")
    ap.add_argument("--consumer", help="overrides worker.consumer (default <hostname>-<pid>)")
    args = ap.parse_args(argv)
    try:
        cfg = settings.load_service(args.config, settings.overrides(args))
    except Exception as e:  # noqa: BLE001
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum, frame):
        if not stop.is_set():
            log.info("%s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from inference.score import load_detector

    settings.process_defaults(cfg.inference)
    t0 = time.time()
    try:
        det = load_detector(cfg.inference)
    except Exception as e:  # noqa: BLE001 - the worker cannot run: say why
        print(f"error: model {cfg.inference.model} cannot be loaded: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    log.info("model %s v%s loaded in %.1f s (threshold %.3f)", det.model_info["name"], det.model_info["version"],
             time.time() - t0, det.threshold)
    Worker(cfg, det).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
