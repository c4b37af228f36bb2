"""HTTP scoring service: `python -m inference.service` (`make serve`), a FastAPI app under uvicorn.

Endpoints (OpenAPI docs at /docs, schema at /openapi.json):
  POST /v1/score        {"id": "a1", "text": "..."}                  -> one score record
  POST /v1/score/batch  {"items": [{"id": ..., "text": ...}, ...]}   -> {"records": [...]} (same order)
  GET  /v1/model        name, version, threshold of the loaded model
  GET  /healthz         the process is alive
  GET  /readyz          the model is loaded (503 while it loads or when it failed to load); `in_flight`:
                        scoring requests running or waiting, `model_calls`: scoring calls so far

A request that is not what the API takes gets a 4xx whose `detail` says what is wrong (400 bad JSON,
401 API key, 413 body too large, 415 not JSON, 422 schema); a text that is merely odd (empty, huge,
binary, any language) gets a score record with `error` set, as everywhere in unspin. The model loads
once per process, in the background, into a scoring process (inference/scoring.py: a text whose
scoring runs over `scoring.budget_s` gets an error record, and the event loop and /healthz never wait
for scoring); one thread off the event loop waits for it (requests that queue up meanwhile are scored
together in its next model call), bounded by `request_timeout_s` (504); more than `max_waiting_texts`
texts waiting get 503 with Retry-After. SIGTERM stops accepting
connections and lets in-flight requests finish (exit status 0).
Settings: configs/service.yaml (`http:` and the top-level keys) and the inference section, configs/inference.yaml.
"""
import argparse
import asyncio
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

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from inference import settings
from inference.scoring import InProcess, ScoringProcess
from inference.settings import ServiceConfig

log = logging.getLogger("unspin.service")
CONFIG_ENV, OVERRIDES_ENV = "UNSPIN_SERVICE_CONFIG", "UNSPIN_SERVICE_SET"


# ---- the score record, as the API documents it ------------------------------------------------

class ModelInfo(BaseModel):
    name: str
    version: str | None = Field(description="registry version, null for an unregistered model")


class SentenceScore(BaseModel):
    start: int = Field(description="character offset into the submitted text")
    end: int
    score: float = Field(description="calibrated probability that the sentence is spun")


class Span(BaseModel):
    start: int = Field(description="character offset into the submitted text: text[start:end]")
    end: int
    text: str
    score: float
    suggestion: str | None = Field(description="likely original wording, or null")


class ScoreRecord(BaseModel):
    """One record per submitted text. With `error` set, `score` and `label` are null."""
    id: str
    score: float | None = Field(description="calibrated probability that the text is machine-spun")
    label: Literal["spun", "clean"] | None = Field(description="spun when score >= threshold")
    threshold: float
    model: ModelInfo
    sentences: list[SentenceScore]
    spans: list[Span]
    error: str | None = Field(description="why the text got no score (empty, too long, binary...), or null")


class BatchResponse(BaseModel):
    records: list[ScoreRecord] = Field(description="one record per item, in request order")


class ModelResponse(BaseModel):
    name: str
    version: str | None
    threshold: float
    uri: str = Field(description="the model URI or path the service loaded")


class Problem(BaseModel):
    detail: str = Field(description="what is wrong")
    errors: list[dict] | None = Field(default=None, description="schema errors: loc, msg, type")


def request_models(max_id_chars: int, max_batch_items: int):
    """The request bodies, with the configured bounds (so /openapi.json states them)."""

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: str = Field(min_length=1, max_length=max_id_chars, description="your id for the text; echoed back")
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
    per call: inference/scoring.py), the thread that waits for it, and the queue of requests waiting for
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


class BodyLimit:
    """413 for a request body over `max_bytes`: at once from Content-Length, else while it streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = f"request body is larger than max_body_bytes={self.max_bytes} bytes"
        try:
            size = int(declared) if declared is not None else None
        except ValueError:
            return await JSONResponse({"detail": "Content-Length is not a number"}, 400)(scope, receive, send)
        if size is not None and size > self.max_bytes:
            return await JSONResponse({"detail": too_big}, 413, headers={"Connection": "close"})(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, too_big)
            return message

        await self.app(scope, limited, send)


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
    app.add_middleware(BodyLimit, max_bytes=http.max_body_bytes)

    async def json_body(request: Request):
        ctype = request.headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise HTTPException(415, f"Content-Type must be application/json, got {ctype or 'none'}")

    dependencies = [Depends(json_body)]
    guard = []
    if key is not None:
        header = APIKeyHeader(name=http.api_key_header, auto_error=False,
                              description=f"API key, in the {http.api_key_header} header")

        async def require_key(given: str | None = Security(header)):
            if not given:
                raise HTTPException(401, f"missing API key: send it in the {http.api_key_header} header",
                                    headers={"WWW-Authenticate": "ApiKey"})
            if not hmac.compare_digest(given.encode("utf-8", "replace"), key.encode()):
                raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "ApiKey"})

        guard = [Security(require_key)]

    problems = {c: {"model": Problem} for c in (400, 401, 413, 415, 422, 503, 504)}

    @app.post("/v1/score", response_model=ScoreRecord, dependencies=guard + dependencies, responses=problems,
              summary="Score one text")
    async def score_one(item: ScoreRequest):
        return (await state.score([(item.id, item.text)]))[0]

    @app.post("/v1/score/batch", response_model=BatchResponse, dependencies=guard + dependencies,
              responses=problems, summary=f"Score up to {http.max_batch_items} texts")
    async def score_many(batch: BatchRequest):
        return {"records": await state.score([(i.id, i.text) for i in batch.items])}

    @app.get("/v1/model", response_model=ModelResponse, dependencies=guard,
             responses={c: {"model": Problem} for c in (401, 503)}, summary="The loaded model")
    async def model():
        det = state.ready_detector()
        return {**det.model_info, "threshold": det.threshold, "uri": cfg.inference.model}

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded",
             responses={503: {"description": "loading, or failed to load"}})
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
        settings.api_key(cfg.http)
    except Exception as e:  # noqa: BLE001 - cannot start: say why
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.process_defaults(cfg.inference)
    import uvicorn

    common = {"host": cfg.http.host, "port": cfg.http.port, "log_level": cfg.log_level.lower(),
              "timeout_graceful_shutdown": cfg.http.drain_timeout_s}
    # Before uvicorn takes the signals over, and once it has drained and re-raised the one it got:
    # a clean exit (status 0).
    def leave(signum, frame):
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)
    if cfg.http.workers > 1:
        os.environ[CONFIG_ENV] = str(args.config or "")
        os.environ[OVERRIDES_ENV] = json.dumps(overrides)
        uvicorn.run("inference.service:app_from_env", factory=True, workers=cfg.http.workers, **common)
        return 0
    failed = []
    server = None

    def stop():
        failed.append(True)
        server.should_exit = True

    server = uvicorn.Server(uvicorn.Config(create_app(cfg, on_load_failure=stop), **common))
    server.run()
    return 3 if failed or not server.started else 0


if __name__ == "__main__":
    sys.exit(main())
