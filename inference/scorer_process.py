"""Scoring with a time budget, in a child process: the one scorer of the HTTP service and the queue worker.

Why a process: a scoring step that runs long (a hostile text, a bug) must not hold up anything else. In a
thread it would hold the GIL inside one regex or tensor call and starve the service's event loop (health
checks) and the worker's heartbeat (so other workers claim its messages and score them again). In a child
process it holds only the child, which the parent can kill.

`ScoringProcess(cfg).start()` starts the child, forked from multiprocessing's fork server (which, with
`scoring.preload`, has imported torch and transformers once: PRELOAD); it loads the model with
`scoring.loader` and scores a warm-up text (so the first real call is not charged for lazy set-up) before
it reports ready.
`score(items)` sends a batch of (id, text) and waits at most its budget: `scoring.budget_s` plus
`scoring.budget_s_per_100k_chars` per 100,000 characters of text. When a batch runs over (or the child
dies), the child is killed and replaced, and the batch is retried text by text, so only the guilty text
pays:
  - a lone text over its budget gets an error record, "scoring took longer than N s";
  - a lone text whose scoring killed the process gets `ScoringFailed` in place of its record (maybe the
    machine's fault, e.g. the OOM killer: the worker retries it, the service answers an error record).
Cost: the model lives in the child only (the parent never imports torch), so memory is one model copy per
scoring process, as when scoring in-process, plus the small parent and fork server (docs/serving.md,
"Scoring process"); a replacement loads the model again (from the copy the first child loaded, so it is the same
version) while calls wait. Texts and records cross a pipe (pickled): negligible next to scoring.

`InProcess(detector)` scores in the caller's process with no budget, for callers that hold a loaded
Detector (tests, Python use). Both give the same records.

Both score with `score_items` (inference/run_detector.py), as the batch command and Spark score with its
`score_batch`.
"""
from __future__ import annotations

import atexit
import dataclasses
import importlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import sys
import threading
import time

from inference.model.record import error_record
from inference.run_detector import score_items
from inference.settings import InferenceConfig, ServiceConfig

log = logging.getLogger("unspin.scoring")
WARM_UP = "The minister said on Monday that the talks had made good progress."
# Imported once by multiprocessing's fork server, so that a scoring process (forked from it) starts without
# importing them again: most of a replacement's start-up time. A name that cannot be imported costs only time.
# Third-party only: the fork server finds modules from its working directory, not from its owner's sys.path
# (Python 3.11), so the project's own modules are imported by each scoring process, as its owner sees them.
PRELOAD = ["numpy", "torch", "transformers", "transformers.models.auto.modeling_auto",
           "transformers.models.auto.tokenization_auto", "transformers.models.bert.modeling_bert"]


class ScoringFailed(RuntimeError):
    """The scoring process died while scoring a text, or could not be started: maybe not the text's fault."""


class Scorer:
    """What the service and worker score with: `score(items)` -> records (or ScoringFailed), same order."""

    model_info: dict | None = None
    threshold: float | None = None
    mode: str | None = None

    def start(self) -> Scorer:
        return self

    def score(self, items: list[tuple[str, object]]) -> list[dict | ScoringFailed]:
        raise NotImplementedError

    def records(self, items: list[tuple[str, object]]) -> list[dict]:
        """Like `score`, with an error record in place of each ScoringFailed (one answer per text)."""
        return [out if isinstance(out, dict) else self.error_record(rid, str(out))
                for (rid, _), out in zip(items, self.score(items))]

    def error_record(self, rid, message: str) -> dict:
        return error_record(rid, message, self.threshold, self.model_info, self.mode)

    def close(self) -> None:
        pass


class InProcess(Scorer):
    def __init__(self, detector, max_text_bytes: int):
        self.detector, self.max_text_bytes = detector, max_text_bytes

    @property
    def model_info(self) -> dict:
        return self.detector.model_info

    @property
    def threshold(self) -> float:
        return self.detector.threshold

    @property
    def mode(self) -> str:
        return self.detector.mode

    def score(self, items):
        return score_items(self.detector, items, self.max_text_bytes)


@dataclasses.dataclass
class Stopped:
    """Why a call to the child gave no records (the child is gone; the next call starts another)."""
    why: str
    over_budget: float | None = None  # the budget, when that was the reason


class ScoringProcess(Scorer):
    """One child process scoring one call at a time (a lock makes sure)."""

    download: str | None = None  # where the first child downloaded the model (replacements load that copy)

    def __init__(self, cfg: ServiceConfig):
        self.cfg, self.max_text_bytes = cfg.scoring, cfg.max_text_bytes
        self.inference: InferenceConfig = cfg.inference
        self.proc = self.conn = None
        self.started = 0  # processes started, replacements included
        self.closed = False
        self.lock = threading.Lock()
        atexit.register(self.close)  # before multiprocessing's own exit handler, which would wait for the child

    def start(self) -> ScoringProcess:
        with self.lock:
            self._ensure_child()
        return self

    def budget(self, items) -> float:
        chars = sum(len(text) for _, text in items if isinstance(text, str))
        return self.cfg.budget_s + self.cfg.budget_s_per_100k_chars * chars / 100_000

    def score(self, items):
        items = list(items)
        if not items:
            return []
        with self.lock:
            out = self._call(items)
            if isinstance(out, list):
                return out
            if len(items) > 1:
                log.warning("a batch of %d texts %s: scoring them one by one", len(items), out.why)
                return [self._one(item) for item in items]
            return [self._answer(items[0], out)]

    def close(self) -> None:
        """Stop the child, from any thread: a call in progress ends with ScoringFailed, later ones too."""
        self.closed = True
        proc = self.proc
        if proc is not None and proc.is_alive():
            proc.kill()

    # ---- the child ---------------------------------------------------------------------------------
    def _ensure_child(self) -> None:
        if self.closed:
            raise ScoringFailed("the scorer is closed")
        if self.proc is not None and self.proc.is_alive():
            return
        self._reap()
        # forked from the fork server: a single-threaded process that has at most imported PRELOAD (no torch
        # thread pool or lock forked mid-use, as a plain fork of the owner would risk)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD if self.cfg.preload else [])
        conn, child_conn = ctx.Pipe()
        proc = ctx.Process(target=serve, name="unspin-scorer", daemon=True,
                           args=(child_conn, self.inference, self.cfg.loader, self.max_text_bytes, os.getpid(),
                                 dict(os.environ)))
        t0 = time.monotonic()
        proc.start()
        child_conn.close()
        self.proc, self.conn = proc, conn
        self.started += 1
        try:
            ready = conn.poll(self.cfg.start_timeout_s)
            kind, payload = conn.recv() if ready else ("failed", (
                f"the scoring process did not load the model within scoring.start_timeout_s="
                f"{self.cfg.start_timeout_s:g} s"))
        except (EOFError, OSError):
            proc.join(5)
            kind, payload = "failed", f"the scoring process exited with status {proc.exitcode} while loading the model"
        if kind != "ready":
            self._reap()
            raise ScoringFailed(payload)
        self.model_info, self.threshold, self.mode = payload["model"], payload["threshold"], payload["mode"]
        if payload["source"]:  # replacements load this very copy, even if the alias has moved since
            self.inference = dataclasses.replace(self.inference, model=payload["source"])
        if payload["download"]:  # the child is killed, never exits: the owner deletes what it downloaded
            self.download = payload["download"]
            atexit.register(shutil.rmtree, self.download, True)
        log.info("scoring process %d ready in %.1f s (model %s v%s)", proc.pid, time.monotonic() - t0,
                 self.model_info["name"], self.model_info["version"])

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(10)
            self.conn.close()
        self.proc = self.conn = None

    def _call(self, items) -> list[dict] | Stopped:
        """The records of `items`, or why there are none. Raises ScoringFailed when no child can be started."""
        self._ensure_child()
        budget = self.budget(items)
        try:
            self.conn.send(items)
            if not self.conn.poll(budget):
                out = Stopped(f"took longer than {budget:.1f} s", budget)
            else:
                kind, payload = self.conn.recv()
                if kind == "records":
                    return payload
                out = Stopped(f"failed in the scoring process: {payload}")
        except (EOFError, OSError):
            self.proc.join(5)
            out = Stopped(f"killed the scoring process (exit status {self.proc.exitcode})")
        self._reap()  # over budget, dead or confused: the next call starts a fresh one
        return out

    def _one(self, item) -> dict | ScoringFailed:
        try:
            out = self._call([item])
        except ScoringFailed as e:
            return e
        return out[0] if isinstance(out, list) else self._answer(item, out)

    def _answer(self, item, out: Stopped) -> dict | ScoringFailed:
        """A lone text's answer when its call stopped: over budget is the text's own doing (an error record);
        a dead process may not be (ScoringFailed: the caller may retry)."""
        if out.over_budget is not None:
            return self.error_record(item[0], f"scoring took longer than {out.over_budget:.1f} s (its budget): "
                                              f"stopped")
        return ScoringFailed(f"scoring {out.why}")


def serve(conn, inference: InferenceConfig, loader: str, max_text_bytes: int, owner: int, environ: dict) -> None:
    """The child: load the model, say so, then score each batch received until the pipe closes."""
    _die_with_parent(owner)
    os.environ.clear()  # the owner's environment now (MLFLOW_TRACKING_URI...), not the fork server's at its start
    os.environ.update(environ)
    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent decides when scoring stops (e.g. Ctrl-C's group signal)
        signal.signal(sig, signal.SIG_IGN)
    import tqdm

    tqdm.tqdm.set_lock(threading.RLock())  # its default, a multiprocessing semaphore, would outlive a killed scorer
    try:
        module, _, function = loader.partition(":")
        detector = getattr(importlib.import_module(module), function)(inference)
        score_items(detector, [("warm-up", WARM_UP)], max_text_bytes)
    except Exception as e:  # noqa: BLE001 - the parent reports it
        why = f"model {inference.model} cannot be loaded (scoring.loader {loader}): {type(e).__name__}: {e}"
        conn.send(("failed", why))
        return
    source = getattr(detector, "source", None)
    download = detector.hand_over_download() if hasattr(detector, "hand_over_download") else None
    conn.send(("ready", {"model": detector.model_info, "threshold": detector.threshold, "mode": detector.mode,
                         "source": str(source) if source else None, "download": download}))
    while True:
        try:
            items = conn.recv()
        except (EOFError, OSError):
            return
        try:
            out = ("records", score_items(detector, items, max_text_bytes))
        except Exception as e:  # noqa: BLE001 - score_items isolates texts: this is a bug, reported to the parent
            out = ("error", f"{type(e).__name__}: {e}")
        conn.send(out)


def _die_with_parent(owner: int) -> None:
    """Have the kernel kill this process when its parent, the fork server, exits (Linux); and let the fork
    server exit with its owner (the service or worker), so that no scorer outlives its owner however that
    one ends, even in the middle of a text."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # multiprocessing hands every forked child the fork server's "alive" pipe, which keeps the server up
    # until all its children exit; this one is stopped by its owner, so it lets go of it
    server = multiprocessing.forkserver._forkserver
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    try:
        os.kill(owner, 0)
    except ProcessLookupError:  # it died before prctl took effect
        os._exit(0)
