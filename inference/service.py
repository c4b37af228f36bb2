"""HTTP scoring service: `python -m inference.service` (`make serve`), a FastAPI app under uvicorn.

Endpoints (OpenAPI docs at /docs, schema at /openapi.json):
  GET  /                a page to paste or upload a text and see it highlighted (inference/report.py), drawn
                        from POST /v1/score
  POST /v1/score        {"id": "a1", "text": "..."}                  -> one score record
  POST /v1/score/batch  {"items": [{"id": ..., "text": ...}, ...]}   -> {"records": [...]} (same order)
  GET  /v1/model        name, version, threshold of the loaded model
  GET  /healthz         the process is alive
  GET  /readyz          the model is loaded (503 while it loads or when it failed to load); `in_flight`:
                        scoring requests running or waiting, `model_calls`: scoring calls so far

A request that is not what the API takes gets a 4xx whose `detail` says what is wrong (400 bad JSON,
401 API key, 408 request too slow, 413 body too large, 415 not JSON, 422 schema); a text that is merely odd
(empty, huge, binary, any language) gets a score record with `error` set, as everywhere in unspin. The model loads
once per process, in the background, into a scoring process (inference/scorer_process.py: a text whose
scoring runs over `scoring.budget_s` gets an error record, and the event loop and /healthz never wait
for scoring); one thread off the event loop waits for it (requests that queue up meanwhile are scored
together in its next model call), bounded by `request_timeout_s` (504); more than `max_waiting_texts`
texts waiting get 503 with Retry-After. SIGTERM stops accepting
connections and lets in-flight requests finish (exit status 0).
Slow clients are bounded (docs/serving.md, "Service limits and guarantees"): the API key is checked on the headers, before
the body is read; a request's head, and the whole request, must each arrive within a deadline, else the
connection is closed; past `limit_concurrency` open connections a request gets 503, past `max_connections` a
new connection is closed unread. Without a key the service serves
only on a loopback address unless `allow_public_without_key`; the key comes from an environment variable
or a file, never from the command line.
Settings: configs/service.yaml (`http:` and the top-level keys) and the inference section, configs/inference.yaml.
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Literal

import h11
import uvicorn
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from data import cli
from inference import settings
from inference.model.record import ModelInfo, ScoreRecord, SentenceScore, Span  # noqa: F401 (importable from here too)
from inference.report import service_page
from inference.scorer_process import InProcess, ScoringProcess
from inference.settings import ServiceConfig

log = logging.getLogger("unspin.service")
CONFIG_ENV, OVERRIDES_ENV = "UNSPIN_SERVICE_CONFIG", "UNSPIN_SERVICE_SET"


# ---- responses (the score record itself is defined in inference/model/record.py) -----------------------

class BatchResponse(BaseModel):
    records: list[ScoreRecord] = Field(description="one record per item, in request order")


class ModelResponse(BaseModel):
    name: str
    version: str | None
    threshold: float
    mode: str = Field(description="thorough (the language model reads every sentence) or fast (the tagger alone)")
    uri: str = Field(description="the model URI or path the service loaded")


class Problem(BaseModel):
    detail: str = Field(description="what is wrong")
    errors: list[dict] | None = Field(default=None, description="schema errors: loc, msg, type")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: Literal[True]
    model: ModelInfo
    in_flight: int = Field(description="scoring requests running or waiting")
    model_calls: int = Field(description="scoring calls so far (each scores one or more requests)")


class NotReady(BaseModel):
    ready: Literal[False]
    detail: str = Field(description="loading, or why the model failed to load")


WHY = {400: "the body is not UTF-8 JSON, or Content-Length is not a number",
       401: "API key missing or wrong (checked on the headers, before the body is read)",
       408: "the request did not arrive in full within http.receive_timeout_s (the connection is then closed)",
       413: "the body is larger than http.max_body_bytes",
       415: "Content-Type is not application/json",
       422: "the body does not match the request schema",
       503: "not ready (the model is loading or failed to load), or more than http.max_waiting_texts texts waiting "
            "(Retry-After says when to retry)",
       504: "scoring took longer than http.request_timeout_s"}
# What uvicorn answers itself, in plain text, to any request before it reaches the API.
PROTOCOL = {400: "request line and headers larger than http.max_head_bytes, or not HTTP (plain text)",
            503: "more than http.limit_concurrency open connections, or a connection past http.max_connections, "
                 "closed unread (plain text)"}


def responses(*codes: int, problem: type[BaseModel] | None = Problem) -> dict:
    """The error responses of an endpoint for /openapi.json: `codes` with a `problem` body, plus uvicorn's
    plain-text ones (PROTOCOL), which any endpoint can get."""
    out = {c: {"description": WHY[c], **({"model": problem} if problem else {})} for c in codes}
    for c, why in PROTOCOL.items():
        entry = out.setdefault(c, {"description": why})
        entry["content"] = {"text/plain": {"schema": {"type": "string"}}}
        if c in codes:
            entry["description"] += "; or " + why
    return out


def request_models(max_id_chars: int, max_batch_items: int):
    """The request bodies, with the configured bounds (so /openapi.json states them)."""

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        # The pattern only documents what _printable_id checks (with a clearer message): not blank.
        id: str = Field(min_length=1, max_length=max_id_chars, description="your id for the text; echoed back",
                        json_schema_extra={"pattern": r"\S"})
        text: str = Field(description="the article; empty, over-long or binary text gets a record with error set")
        title: str | None = Field(default=None, description="accepted and ignored")

        @field_validator("id")
        @classmethod
        def _printable_id(cls, v: str) -> str:
            if not v.strip():
                raise ValueError("id is blank")
            if any("\ud800" <= c <= "\udfff" for c in v):
                raise ValueError("id holds a lone surrogate (not UTF-8)")
            return v

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        items: list[ScoreRequest] = Field(min_length=1, max_length=max_batch_items)

    return ScoreRequest, BatchRequest


# ---- the app ----------------------------------------------------------------------------------

class State:
    """What one service process holds: the scorer (a child process holding the model, with a time budget
    per call: inference/scorer_process.py), the thread that waits for it, and the queue of requests waiting for
    that thread. Requests that queue up while it is busy are scored together in its next model call (up
    to `score_batch_texts` texts): no added wait at low load, fewer and larger model calls under load."""

    def __init__(self, cfg: ServiceConfig, detector=None):
        # a Detector given: scored in this process (tests, Python use); else in a scoring process
        self.scorer = InProcess(detector, cfg.max_text_bytes) if detector is not None else ScoringProcess(cfg)
        self.cfg, self.load_error = cfg, None
        self.detector = self.scorer if detector is not None else None  # the scorer, once ready
        self.executor: ThreadPoolExecutor | None = None
        self.queue: asyncio.Queue | None = None
        self.in_flight = 0  # scoring requests running or waiting for the scoring thread
        self.waiting_texts = 0  # their texts: bounded by max_waiting_texts
        self.model_calls = 0  # calls of the scoring thread (each scores one or more requests)

    async def load(self, on_failure=None) -> None:
        t0 = time.time()
        try:
            # started from the scoring thread, which calls it from then on (the child lives as long as that thread)
            det = await asyncio.get_running_loop().run_in_executor(self.executor, self.scorer.start)
        except Exception as e:  # noqa: BLE001 - reported by /readyz and the log
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("model %s failed to load: %s", self.cfg.inference.model, self.load_error)
            if on_failure is not None:
                on_failure()
            return
        self.detector = det
        log.info("model %s v%s loaded from %s in %.1f s (threshold %.3f)", det.model_info["name"],
                 det.model_info["version"], self.cfg.inference.model, time.time() - t0, det.threshold)

    def ready_detector(self):
        if self.detector is None:
            why = f"model failed to load: {self.load_error}" if self.load_error else "model is still loading"
            raise HTTPException(503, why, headers={"Retry-After": "5"})
        return self.detector

    async def batcher(self) -> None:
        """Score queued requests, several per model call; each gets its own records back."""
        loop = asyncio.get_running_loop()
        limit, carry = self.cfg.http.score_batch_texts, None
        while True:
            jobs = [carry or await self.queue.get()]
            carry, n = None, len(jobs[0][0])
            while n < limit and not self.queue.empty():
                job = self.queue.get_nowait()
                if n + len(job[0]) > limit:
                    carry = job  # first in the next call
                    break
                jobs.append(job)
                n += len(job[0])
            jobs = [(items, fut) for items, fut in jobs if not fut.done()]  # timed out meanwhile
            if not jobs:
                continue
            self.model_calls += 1
            try:
                records = await loop.run_in_executor(self.executor, self.detector.records,
                                                     [it for items, _ in jobs for it in items])
            except Exception as e:  # the scorer isolates bad texts: this is a real failure (500)
                log.exception("scoring %d requests failed", len(jobs))
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            k = 0
            for items, fut in jobs:
                if not fut.done():
                    fut.set_result(records[k:k + len(items)])
                k += len(items)

    async def score(self, items: list[tuple[str, str]]) -> list[dict]:
        self.ready_detector()
        timeout, limit = self.cfg.http.request_timeout_s, self.cfg.http.max_waiting_texts
        # Shed load rather than queue without bound: past this, requests would only wait to time out,
        # and the scoring thread would spend itself on requests whose callers had given up.
        if self.waiting_texts + len(items) > limit:
            raise HTTPException(503, f"server busy: {self.waiting_texts} texts are waiting to be scored "
                                     f"(max_waiting_texts={limit}); retry later", headers={"Retry-After": "5"})
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((items, fut))
        self.in_flight += 1
        self.waiting_texts += len(items)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise HTTPException(504, f"scoring did not finish within request_timeout_s={timeout:g} s "
                                     f"(server busy, or the texts are too long): retry later or send less") from None
        finally:
            self.in_flight -= 1
            self.waiting_texts -= len(items)


def _where(loc) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _validation_problem(exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        e = next(e for e in exc.errors() if e.get("type") == "json_invalid")
        pos = e.get("loc", ("body", "?"))[-1]
        return JSONResponse({"detail": f"request body is not valid JSON: {(e.get('ctx') or {}).get('error', '')} "
                                       f"(at character {pos})", "errors": errors}, status_code=400)
    parts = []
    for e in errors:
        if e["type"] == "missing" and e["loc"] == ["body"]:
            parts.append("request body is missing: send a JSON object")
        elif e["type"] == "extra_forbidden":
            parts.append(f"{_where(e['loc'])}: unknown field")
        else:
            parts.append(f"{_where(e['loc'])}: {e['msg']}")
    more = f" (and {len(parts) - 5} more)" if len(parts) > 5 else ""
    return JSONResponse({"detail": "; ".join(parts[:5]) + more, "errors": errors}, status_code=422)


CLOSE = {"Connection": "close"}  # a request rejected before its body was read: the rest is never read either


class KeyGuard:
    """401 for a request under `prefix` without the right key, decided on the headers alone: a huge or slow
    body is never read. The key is compared as a SHA-256 digest with hmac.compare_digest, so the time taken
    tells nothing about the key, not even its length."""

    def __init__(self, app, key: str, header: str, prefix: str = "/v1/"):
        self.app, self.prefix, self.header = app, prefix, header
        self.name = header.lower().encode("latin-1")
        self.digest = hashlib.sha256(key.encode("utf-8")).digest()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            problem = self.problem(dict(scope.get("headers") or []).get(self.name))
            if problem:
                response = JSONResponse({"detail": problem}, 401, headers={"WWW-Authenticate": "ApiKey", **CLOSE})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def problem(self, given: bytes | None) -> str | None:
        if not given:
            return f"missing API key: send it in the {self.header} header"
        if not hmac.compare_digest(hashlib.sha256(given).digest(), self.digest):
            return "invalid API key"
        return None


class BodyGuard:
    """A POST body bounded in size: 413 when it is over `max_bytes`, at once from Content-Length, else as it
    streams in; the connection is then closed. (Its time is bounded by GuardedH11Protocol, whether or not
    anything reads it.)"""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = f"request body is larger than max_body_bytes={self.max_bytes} bytes"
        try:
            size = int(declared) if declared is not None else None
        except ValueError:
            return await JSONResponse({"detail": "Content-Length is not a number"}, 400, headers=CLOSE)(
                scope, receive, send)
        if size is not None and size > self.max_bytes:
            return await JSONResponse({"detail": too_big}, 413, headers=CLOSE)(scope, receive, send)
        seen = 0

        async def guarded():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, too_big, headers=CLOSE)
            return message

        await self.app(scope, guarded, send)


# What a connection past max_connections gets before it is closed: written at once, nothing of it is read.
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
           b"content-length: 19\r\n\r\nService Unavailable")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds on slow clients that uvicorn lacks. uvicorn times out only idle
    keep-alive connections, and its `limit_concurrency` acts on requests: a connection that never completes
    one is bounded neither in time nor in number. Here:
    - past `max_connections` open connections, a new one gets a plain-text 503 and is closed, unread;
    - a request's line and headers must arrive within `head_timeout_s`, and the whole request, body included,
      within `receive_timeout_s`, of the connection opening (first request) or of the request's first byte
      (later ones: the idle time between requests is `keep_alive_timeout_s`'s, so a proxy's pooled
      connections can idle longer than a request may take); else the connection is closed, after a 408 when
      the head was in and no response had started. Here, not in the app: the bound holds whatever the app
      does meanwhile (reads the body, waits, or answers early);
    - a response sent before its request's body has fully arrived (401, 413...) closes the connection instead
      of reading on whatever the client still sends."""

    _head_timer: asyncio.TimerHandle | None = None
    _receive_timer: asyncio.TimerHandle | None = None
    _refused = False
    _between_requests = False  # a response is complete and nothing of the next request has come

    def connection_made(self, transport):
        if len(self.connections) >= self.config.max_connections:
            self._refused = True  # never counted, never read: uvicorn's own state is not set up for it
            log.warning("refused a connection: %d open (http.max_connections)", len(self.connections))
            transport.write(REFUSED)
            transport.close()
            return
        super().connection_made(transport)
        self._start_clock()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._between_requests:
            self._between_requests = False
            self._start_clock()
        super().data_received(data)
        self._note_arrival()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()
        super().on_response_complete()  # takes up a pipelined request already received, if any
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._between_requests = True  # until its first byte: uvicorn's keep-alive timeout
        else:
            self._start_clock()

    def connection_lost(self, exc):
        if self._refused:
            return
        self._stop_clock()
        super().connection_lost(exc)

    def _start_clock(self):
        """The deadlines of the request being received, or about to be, run from now."""
        self._stop_clock()
        self._head_timer = self.loop.call_later(self.config.head_timeout_s, self._timed_out)
        self._receive_timer = self.loop.call_later(self.config.receive_timeout_s, self._timed_out)
        self._note_arrival()

    def _note_arrival(self):
        state = self.conn.their_state
        if state is not h11.IDLE and self._head_timer is not None:  # the head is in
            self._head_timer.cancel()
            self._head_timer = None
        if state not in (h11.IDLE, h11.SEND_BODY) and self._receive_timer is not None:  # all of it is in
            self._receive_timer.cancel()
            self._receive_timer = None

    def _stop_clock(self):
        for timer in (self._head_timer, self._receive_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._receive_timer = None

    def _timed_out(self):
        state = self.conn.their_state
        if self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            return
        self._stop_clock()
        cycle = self.cycle if state is h11.SEND_BODY else None
        if cycle is not None and not cycle.response_started:
            log.info("closing a connection from %s: its request did not arrive within receive_timeout_s",
                     ":".join(map(str, self.client or ("?",))))
            self._send_408()
            # The app may still wait for the body: it gets a disconnect, and what it sends is dropped, as for a
            # client that went away (uvicorn's connection_lost does the same once the transport is closed).
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _send_408(self):
        body = json.dumps({"detail": f"request did not arrive in full within receive_timeout_s="
                                     f"{self.config.receive_timeout_s:g} s"}).encode()
        headers = [*self.server_state.default_headers, (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        try:
            for event in (h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # h11 would not send it in this state: the close says enough
            pass


class ServerConfig(uvicorn.Config):
    """uvicorn's settings plus the bounds GuardedH11Protocol (which it always uses) reads: `head_timeout_s`,
    `receive_timeout_s` and `max_connections`."""

    def __init__(self, app, head_timeout_s: float, receive_timeout_s: float, max_connections: int, **kwargs):
        super().__init__(app, http=GuardedH11Protocol, **kwargs)
        self.head_timeout_s, self.receive_timeout_s = head_timeout_s, receive_timeout_s
        self.max_connections = max_connections


def server_settings(cfg: ServiceConfig) -> dict:
    """ServerConfig's keyword arguments from the service settings (main and the tests use the same)."""
    http = cfg.http
    return {"host": http.host, "port": http.port, "log_level": cfg.log_level.lower(),
            "timeout_graceful_shutdown": http.drain_timeout_s, "limit_concurrency": http.limit_concurrency,
            "timeout_keep_alive": http.keep_alive_timeout_s, "head_timeout_s": http.head_timeout_s,
            "receive_timeout_s": http.receive_timeout_s, "max_connections": http.max_connections,
            "h11_max_incomplete_event_size": http.max_head_bytes}


def create_app(config: ServiceConfig | None = None, detector=None, on_load_failure=None) -> FastAPI:
    """The service app. `detector`: use this loaded Detector instead of loading `config.inference.model`;
    `on_load_failure`: called (on the event loop) when the model cannot be loaded."""
    cfg = config or settings.load_service()
    http = cfg.http
    key = settings.api_key(http)
    state = State(cfg, detector)
    ScoreRequest, BatchRequest = request_models(cfg.max_id_chars, http.max_batch_items)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unspin-score")
        state.queue = asyncio.Queue()
        loader = asyncio.create_task(state.load(on_load_failure)) if state.detector is None else None
        batcher = asyncio.create_task(state.batcher())
        try:
            yield
        finally:
            for task in (loader, batcher):
                if task is not None and not task.done():
                    task.cancel()
            state.scorer.close()
            state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="unspin", version="1", lifespan=lifespan,
                  description="Detects machine-spun (synonym-swapped) text. Every scored text gets a score "
                              "record; see the ScoreRecord schema.")
    app.state.unspin = state
    app.add_middleware(BodyGuard, max_bytes=http.max_body_bytes)
    if key is not None:  # added last, so it runs first: before anything reads the body
        app.add_middleware(KeyGuard, key=key, header=http.api_key_header)

    async def json_body(request: Request):
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise HTTPException(415, f"Content-Type must be application/json, got {ctype or 'none'}")

    dependencies = [Depends(json_body)]
    # The key is checked by KeyGuard; this declares it in /openapi.json (and /docs' Authorize button).
    guard = [Security(APIKeyHeader(name=http.api_key_header, auto_error=False, description=(
        f"API key, in the {http.api_key_header} header")))] if key is not None else []
    keyed = (401,) if key is not None else ()
    scoring = responses(400, *keyed, 408, 413, 415, 422, 503, 504)

    @app.post("/v1/score", response_model=ScoreRecord, dependencies=guard + dependencies, responses=scoring,
              summary="Score one text")
    async def score_one(item: ScoreRequest):
        return (await state.score([(item.id, item.text)]))[0]

    @app.post("/v1/score/batch", response_model=BatchResponse, dependencies=guard + dependencies,
              responses=scoring, summary=f"Score up to {http.max_batch_items} texts")
    async def score_many(batch: BatchRequest):
        return {"records": await state.score([(i.id, i.text) for i in batch.items])}

    @app.get("/v1/model", response_model=ModelResponse, dependencies=guard, responses=responses(*keyed, 503),
             summary="The loaded model")
    async def model():
        det = state.ready_detector()
        return {**det.model_info, "threshold": det.threshold, "mode": det.mode, "uri": cfg.inference.model}

    # The paste-and-check page: no key in it (the user types one, sent in api_key_header), nothing from the network.
    page = service_page(http.api_key_header if key is not None else None)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    @app.get("/healthz", response_model=Health, responses=responses(problem=None),
             summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, responses=responses(503, problem=NotReady),
             summary="Readiness: the model is loaded")
    async def readyz():
        if state.detector is None:
            why = f"model failed to load: {state.load_error}" if state.load_error else "model is still loading"
            return JSONResponse({"ready": False, "detail": why}, status_code=503)
        return {"ready": True, "model": state.detector.model_info, "in_flight": state.in_flight,
                "model_calls": state.model_calls}

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        return _validation_problem(exc)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException):
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no such endpoint: {request.url.path} (see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        elif exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "request body could not be read: it must be UTF-8 encoded JSON"
        return JSONResponse({"detail": str(detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception):  # a bug, never bad input: log it, say little
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-process serving: settings from $UNSPIN_SERVICE_CONFIG/$UNSPIN_SERVICE_SET."""
    overrides = json.loads(os.environ.get(OVERRIDES_ENV) or "[]")
    cfg = settings.load_service(os.environ.get(CONFIG_ENV) or None, overrides)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.process_defaults(cfg.inference)
    return create_app(cfg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="unspin HTTP scoring service (FastAPI under uvicorn)")
    settings.add_common_args(ap, "service config (default configs/service.yaml; the model and how it runs: "
                                 "configs/inference.yaml)")
    ap.add_argument("--host", help="overrides http.host")
    ap.add_argument("--port", type=int, help="overrides http.port")
    args = ap.parse_args(argv)
    overrides = settings.overrides(args)
    try:
        cfg = settings.load_service(args.config, overrides)
        warnings = settings.check_http(cfg.http)
    except Exception as e:  # noqa: BLE001 - cannot start: say why
        return cli.fail(e)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for warning in warnings:
        log.warning(warning)
    settings.process_defaults(cfg.inference)

    # Before uvicorn takes the signals over, and once it has drained and re-raised the one it got:
    # a clean exit (status 0).
    def leave(signum, frame):
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)
    if cfg.http.workers > 1:
        os.environ[CONFIG_ENV] = str(args.config or "")
        os.environ[OVERRIDES_ENV] = json.dumps(overrides)
        config = ServerConfig("inference.service:app_from_env", factory=True, workers=cfg.http.workers,
                              **server_settings(cfg))
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    failed = []
    server = None

    def stop():
        failed.append(True)
        server.should_exit = True

    server = uvicorn.Server(ServerConfig(create_app(cfg, on_load_failure=stop), **server_settings(cfg)))
    server.run()
    return 3 if failed or not server.started else 0


if __name__ == "__main__":
    sys.exit(main())
