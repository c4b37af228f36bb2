"""Queue worker: score articles from a Redis stream, `python -m inference.worker` (`make worker`).

Reads `articles_stream` (fields `id` and `text`, or `json` holding {"id": ..., "text": ...}) as a member
of consumer group `group`, and for each article writes its score record to `verdicts_stream`, and to
`review_stream` as well when it is labelled spun (for human moderators). Guarantees (docs/serving.md, "Queue worker"):
  - at least once, one verdict per (id, text): a message is acknowledged only by the atomic step (a Lua
    script) that writes its result, and only after the writes succeeded, so a failed write leaves it
    pending, never acknowledged unanswered. A message whose id already has a verdict for the same text
    (key `<seen_prefix><id>`, kept `retention.seen_ttl_s`) is acknowledged without a second one; a re-send
    with another text (a corrected article) is scored again and gets a new verdict;
  - nothing is lost when a worker dies: its pending messages are claimed by live workers once idle for
    `claim_idle_ms` (XAUTOCLAIM; a restarted worker with the same consumer name reads its own pending
    messages first). A live worker keeps the batch it is scoring from looking idle, however long that
    takes: scoring runs in a child process (inference/scorer_process.py), so the heartbeat thread is never starved.
    A redelivered message is scored on its own, so one poison message cannot take its batch down with it;
  - permanent failures are answered at once: a message that cannot be parsed (not JSON, nested too deep,
    no id, no text, text not a string, over `max_message_bytes`) goes to `dead_stream`; an odd text (empty,
    too long, binary, not UTF-8), one the model fails on, or one whose scoring runs over its budget gets a
    verdict whose record has `error` set, as everywhere in unspin;
  - transient failures are retried: a Redis error or a scoring process that died leaves the message
    pending; it is claimed again after `claim_idle_ms` and goes to `dead_stream` once delivered more than
    `max_attempts` times;
  - bounded: every stream is trimmed (`retention`), every Redis call times out (`redis_timeout_s`);
  - SIGTERM/SIGINT: the batch in hand is finished and acknowledged, then the worker exits 0 (with Redis
    unreachable, within `redis_timeout_s`: the batch stays pending for another worker).
Settings: configs/service.yaml (`worker:`, `scoring:` and the top-level keys) and the inference section,
configs/inference.yaml.
"""
from __future__ import annotations

import argparse
import hashlib
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
from redis.backoff import NoBackoff
from redis.retry import Retry

from data import cli
from inference import settings
from inference.io.inputs import clean_id
from inference.model.record import error_record, to_json
from inference.scorer_process import Scorer, ScoringFailed, ScoringProcess
from inference.settings import ServiceConfig, WorkerConfig

log = logging.getLogger("unspin.worker")

# Lua helpers shared by the write scripts. Every key is type-checked before the first write: Redis does not
# roll a script back, so a write failing half-way (WRONGTYPE) would leave half a result. `pending` says
# whether the message still awaits an answer from the group (another consumer may have finished it).
LUA_COMMON = """
local function wrong_type(key, kind)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= kind then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. kind .. ': nothing written')
  end
end
local function pending(stream, group, mid)
  return #redis.call('XPENDING', stream, group, mid, mid, 1) > 0
end
"""

# Write a message's verdict (and its review entry when spun), record it for de-duplication, and only then
# acknowledge the message. Returns 1 (written), 0 (this id already has a verdict for this very text:
# acknowledged only), -1 (no longer pending: another consumer answered it; nothing written).
# KEYS: articles, verdicts, review, seen (<seen_prefix><id>). ARGV: group, message id, article id, record
# JSON, label, spun (1/0), text digest, consumer, verdicts maxlen, review maxlen, seen TTL (s).
WRITE_VERDICT = LUA_COMMON + """
if not pending(KEYS[1], ARGV[1], ARGV[2]) then return -1 end
local err = wrong_type(KEYS[2], 'stream') or wrong_type(KEYS[3], 'stream') or wrong_type(KEYS[4], 'string')
if err then return err end
local seen = redis.call('GET', KEYS[4])
if seen and string.sub(seen, 1, #ARGV[7] + 1) == ARGV[7] .. ' ' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
local vid = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', 'id', ARGV[3], 'label', ARGV[5],
                       'message_id', ARGV[2], 'consumer', ARGV[8], 'record', ARGV[4])
if ARGV[6] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[10], '*', 'id', ARGV[3], 'label', ARGV[5], 'message_id', ARGV[2],
             'verdict_id', vid, 'record', ARGV[4])
end
redis.call('SET', KEYS[4], ARGV[7] .. ' ' .. vid, 'EX', ARGV[11])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# Write a message to the dead-letter stream, then acknowledge it (nothing if no longer pending).
# KEYS: articles, dead. ARGV: group, message id, article id, error, deliveries, fields JSON, consumer, maxlen.
WRITE_DEAD = LUA_COMMON + """
if not pending(KEYS[1], ARGV[1], ARGV[2]) then return -1 end
local err = wrong_type(KEYS[2], 'stream')
if err then return err end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'message_id', ARGV[2], 'id', ARGV[3], 'error', ARGV[4],
           'deliveries', ARGV[5], 'stream', KEYS[1], 'consumer', ARGV[7], 'fields', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
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
    digest: str = ""  # of the text as sent: a re-send of the same text is a duplicate, another text is not


def _decode(value, what: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadMessage(f"{what} is not UTF-8") from None


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _size(fields: dict) -> int:
    return sum(len(k) + len(v) for k, v in fields.items())


def parse_message(message: Message, max_id_chars: int = 512, max_bytes: int = 2_000_000) -> Article:
    """The article a stream message carries; raises BadMessage (and nothing else) when there is none."""
    try:
        return _parse(message, max_id_chars, max_bytes)
    except BadMessage:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError) as e:  # e.g. a 5,000-digit integer id
        raise BadMessage(f"message cannot be read: {type(e).__name__}: {str(e)[:200]}") from None


def _parse(message: Message, max_id_chars: int, max_bytes: int) -> Article:
    raw = message.fields
    if not raw:
        raise BadMessage("empty message (no fields)")
    if _size(raw) > max_bytes:
        raise BadMessage(f"message is {_size(raw)} bytes, over the limit of {max_bytes} (worker.max_message_bytes)")
    keys = {_decode(k, "a field name"): v for k, v in raw.items()}
    if "json" in keys:
        try:
            obj = json.loads(_decode(keys["json"], "field json"))
        except json.JSONDecodeError as e:
            raise BadMessage(f"field json is not valid JSON: {e}") from None
        except RecursionError:
            raise BadMessage("field json is nested too deeply") from None
        if not isinstance(obj, dict):
            raise BadMessage(f"field json must hold an object with id and text, got {type(obj).__name__}")
        rid, text, text_present = obj.get("id"), obj.get("text"), "text" in obj
    elif "id" in keys or "text" in keys:
        rid = _decode(keys["id"], "field id") if "id" in keys else None
        text_present = "text" in keys
        text = keys.get("text")
    else:
        raise BadMessage(f"message has neither id and text fields nor a json field (fields: {', '.join(sorted(keys))})"
                         [:300])
    clean = clean_id(rid)
    if clean is None:
        raise BadMessage("missing id" if rid is None else f"id must be a non-empty string or integer, got {rid!r}"[:300])
    if len(clean) > max_id_chars:
        raise BadMessage(f"id is {len(clean)} characters, over the limit of {max_id_chars}")
    if not text_present or text is None:
        raise BadMessage("missing text", clean)
    if isinstance(text, bytes):  # a Redis field value: undecodable bytes are an odd text, not a bad message
        try:
            return Article(message, clean, text.decode("utf-8"), digest=_digest(text))
        except UnicodeDecodeError:
            return Article(message, clean, None, "not UTF-8 text", _digest(text))
    if not isinstance(text, str):
        raise BadMessage(f"text is not a string ({type(text).__name__})", clean)
    return Article(message, clean, text, digest=_digest(text.encode("utf-8", "surrogatepass")))


def _printable_fields(fields: dict) -> str:
    out = {}
    for k, v in list(fields.items())[:20]:
        k = k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else str(k)
        v = v[:MAX_DEAD_FIELD_CHARS + 1]
        v = v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
        out[k[:200]] = v if len(v) <= MAX_DEAD_FIELD_CHARS else v[:MAX_DEAD_FIELD_CHARS] + "... (cut)"
    return json.dumps(out, ensure_ascii=False)


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def connect(w: WorkerConfig) -> redis.Redis:
    """A client whose every call gives up after redis_timeout_s (a blocking read: after block_ms more), with no
    retries of its own: the worker's loop waits out outages, and stays responsive to SIGTERM meanwhile."""
    return redis.Redis.from_url(w.redis_url, decode_responses=False, socket_connect_timeout=w.redis_timeout_s,
                                socket_timeout=w.redis_timeout_s + w.block_ms / 1000, socket_keepalive=True,
                                health_check_interval=30, retry=Retry(NoBackoff(), 0))


def _stream_id(value) -> tuple[int, int]:
    ms, _, seq = (value.decode() if isinstance(value, bytes) else str(value)).partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Counts:
    read: int = 0
    verdicts: int = 0
    spun: int = 0
    duplicates: int = 0
    dead: int = 0
    stale: int = 0
    retried: int = 0
    failed_batches: int = 0
    claimed: int = 0
    trimmed: int = 0
    started: float = field(default_factory=time.time)

    def summary(self) -> str:
        secs = max(time.time() - self.started, 1e-9)
        return (f"{self.read} read, {self.verdicts} verdicts ({self.spun} spun), {self.duplicates} duplicates, "
                f"{self.dead} dead-lettered, {self.retried} left for a retry, {self.claimed} claimed from other "
                f"consumers, {self.stale} finished elsewhere, {self.failed_batches} failed batches, {self.trimmed} "
                f"handled messages trimmed; {self.verdicts / secs:.2f} verdicts/s")


class Worker:
    """One consumer of the articles stream. `run(stop)` loops until `stop` is set; the steps
    (`ensure_group`, `read_own_pending`, `claim_stale`, `read_new`, `process`, `trim_articles`) can be
    called alone. `scorer`: a started inference.scorer_process Scorer."""

    def __init__(self, cfg: ServiceConfig, scorer: Scorer, client: redis.Redis | None = None,
                 consumer: str | None = None):
        self.cfg, self.w, self.keep, self.scorer = cfg, cfg.worker, cfg.worker.retention, scorer
        self.redis = client or connect(self.w)
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

    def trim_articles(self) -> int:
        """Delete handled messages older than retention.articles_keep_s from the articles stream: only entries
        before the first pending and the last delivered entry of every group on it, so nothing unread or
        unanswered goes. Returns how many were deleted (whole stream nodes: MINID ~)."""
        now_s, now_us = self.redis.time()  # Redis's clock made the entry ids
        cut = (int(now_s * 1000 + now_us // 1000 - self.keep.articles_keep_s * 1000), 0)
        for g in self.redis.xinfo_groups(self.w.articles_stream):
            cut = min(cut, _stream_id(g["last-delivered-id"]))
            if g["pending"]:
                cut = min(cut, _stream_id(self.redis.xpending(self.w.articles_stream, g["name"])["min"]))
        if cut <= (0, 0):
            return 0
        trimmed = self.redis.xtrim(self.w.articles_stream, minid=f"{cut[0]}-{cut[1]}", approximate=True)
        self.counts.trimmed += trimmed
        return trimmed

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
        """Verdicts (or dead letters) for `messages`, each acknowledged after its result is written."""
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
        except ScoringFailed as e:  # no scoring process could be started: the same, and say why in a dead letter
            self._leave_pending([m.message_id for m in messages], str(e))
            raise
        except Exception as e:  # a bug: leave the batch pending, to be retried alone, then dead-lettered
            self.counts.failed_batches += 1
            log.exception("batch of %d messages failed (left pending for redelivery)", len(messages))
            self._leave_pending([m.message_id for m in messages], f"{type(e).__name__}: {e}")

    def _leave_pending(self, message_ids: list[str], error: str) -> None:
        """Remember why these messages were not answered: their dead letter says so after max_attempts."""
        self.counts.retried += len(message_ids)
        for mid in message_ids:
            self.last_errors[mid] = error
        while len(self.last_errors) > MAX_LAST_ERRORS:  # messages finished elsewhere are never popped here
            del self.last_errors[next(iter(self.last_errors))]

    def _score_and_write(self, messages: list[Message]) -> None:
        articles = self._parse_or_bury(messages)
        todo = self._skip_duplicates(articles)
        if not todo:
            return
        with self.holding([a.message for a in todo]):
            outcomes = self.scorer.score([(a.id, a.text) for a in todo])
        answered = []
        for a, out in zip(todo, outcomes):
            if isinstance(out, ScoringFailed):  # maybe not the text's fault: try again later
                log.warning("message %s (id %s) left pending for a retry: %s", a.message.message_id, a.id, out)
                self._leave_pending([a.message.message_id], str(out))
                continue
            if a.error:  # known before scoring (undecodable text bytes)
                out = error_record(a.id, a.error, out["threshold"], out["model"], out["mode"])
            answered.append((a, out))
        self._write_verdicts(answered)

    def _parse_or_bury(self, messages: list[Message]) -> list[Article]:
        """The articles of `messages`; the rest are dead-lettered (or, when deleted from the stream, acknowledged)."""
        articles: list[Article] = []
        dead: list[tuple[Message, str | None, str]] = []
        for m in messages:
            if not m.fields:  # deleted from the stream while pending: nothing left to do
                self.redis.xack(self.w.articles_stream, self.w.group, m.message_id)
                continue
            try:
                article = parse_message(m, self.cfg.max_id_chars, self.w.max_message_bytes)
            except BadMessage as e:
                dead.append((m, e.article_id, str(e)))
                continue
            if m.deliveries > self.w.max_attempts:
                why = self.last_errors.get(m.message_id) or "its consumer died or failed while scoring it"
                why = f"gave up after {m.deliveries} deliveries (max_attempts {self.w.max_attempts}): {why}"
                dead.append((m, article.id, why))
                continue
            articles.append(article)
        self._dead_letter(dead)
        return articles

    def _seen_key(self, article_id: str) -> str:
        return self.w.seen_prefix + article_id

    def _skip_duplicates(self, articles: list[Article]) -> list[Article]:
        """Acknowledge the articles whose id already has a verdict for the same text; return the others."""
        if not articles:
            return []
        seen = self.redis.mget([self._seen_key(a.id) for a in articles])
        done = {a.message.message_id for a, s in zip(articles, seen) if s and s.startswith(f"{a.digest} ".encode())}
        if done:  # a redelivered or re-sent article: its verdict exists, acknowledge only
            self.redis.xack(self.w.articles_stream, self.w.group, *done)
            self.counts.duplicates += len(done)
        return [a for a in articles if a.message.message_id not in done]

    def _write_verdicts(self, answered: list[tuple[Article, dict]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for a, rec in answered:
            label = rec.get("label") or ""
            body = to_json(rec)
            self.write_verdict(
                keys=[self.w.articles_stream, self.w.verdicts_stream, self.w.review_stream, self._seen_key(a.id)],
                args=[self.w.group, a.message.message_id, a.id, body, label, "1" if label == "spun" else "0",
                      a.digest, self.consumer, self.keep.verdicts_maxlen, self.keep.review_maxlen,
                      self.keep.seen_ttl_s], client=pipe)
        results = pipe.execute(raise_on_error=False) if answered else []
        errors = []
        for (a, rec), result in zip(answered, results):
            if isinstance(result, Exception):
                errors.append(result)
                log.warning("verdict not written for message %s (id %s), left pending: %s", a.message.message_id,
                            a.id, result)
                self._leave_pending([a.message.message_id], f"verdict not written: {result}")
                continue
            self.last_errors.pop(a.message.message_id, None)
            if result == 1:
                self.counts.verdicts += 1
                self.counts.spun += rec.get("label") == "spun"
            elif result == 0:
                self.counts.duplicates += 1
            else:
                self.counts.stale += 1
        if errors:  # nothing was acknowledged for these: the loop waits, then they come back
            raise errors[0]

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
            self.write_dead(keys=[self.w.articles_stream, self.w.dead_stream],
                            args=[self.w.group, m.message_id, aid or "", error, m.deliveries,
                                  _printable_fields(m.fields), self.consumer, self.keep.dead_maxlen], client=pipe)
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
                self.trim_articles()
            if msgs:
                self.process(msgs)
                return len(msgs)
        msgs = self.read_new(self.w.block_ms if block_ms is None else block_ms)
        self.process(msgs)
        return len(msgs)

    def run(self, stop: threading.Event) -> Counts:
        """Loop until `stop` is set (between batches). Redis outages and a scorer that cannot start are waited out."""
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
                continue
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis unavailable (%s); retrying in %.1f s", e, backoff)
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):
                    log.warning("consumer group %s is gone; creating it again", self.w.group)
                    started = False
                    continue
                log.error("redis error (%s); retrying in %.1f s", e, backoff)  # OOM, READONLY, a wrong-type key
            except ScoringFailed as e:
                log.error("no scoring process (%s); retrying in %.1f s", e, backoff)
            finally:
                if time.monotonic() - last_log >= self.w.log_every_s:
                    log.info("%s", self.counts.summary())
                    last_log = time.monotonic()
            stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
        log.info("stopping: %s", self.counts.summary())
        return self.counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="unspin queue worker: score articles from a Redis stream")
    settings.add_common_args(ap, "service config (default configs/service.yaml; the model and how it runs: "
                                 "configs/inference.yaml)")
    ap.add_argument("--redis-url", help="overrides worker.redis_url")
    ap.add_argument("--consumer", help="overrides worker.consumer (default <hostname>-<pid>)")
    args = ap.parse_args(argv)
    try:
        cfg = settings.load_service(args.config, settings.overrides(args))
    except Exception as e:  # noqa: BLE001 - cannot start: say why
        return cli.fail(e)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum, frame):
        if not stop.is_set():
            log.info("%s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    settings.process_defaults(cfg.inference)
    scorer = ScoringProcess(cfg)
    try:
        scorer.start()
    except ScoringFailed as e:  # the worker cannot run: say why
        return cli.fail(e)
    try:
        Worker(cfg, scorer).run(stop)
    finally:
        scorer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
