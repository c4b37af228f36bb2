"""Seconds per 100 KB of crafted hostile text: `python bench/bench_hostile.py` (part of `make bench`).

Each family of tests/hostile.py (and ordinary prose, for reference) goes through the three ways a text
comes in, as real processes started from this checkout:
  - batch:  `python -m inference.score FILE --output OUT` (the family as a .txt or .html file), timed from
            its progress bar's first appearance, when the model is loaded, to its summary line;
  - http:   POST /v1/score to `python -m inference.service`, one text at a time;
  - worker: XADD to a throwaway redis-server until `python -m inference.worker` writes the verdict.
Figures only: nothing is asserted. Sizes (`--kb`, default 100) are measured in turn; the figure per 100 KB
is the one measured at 100 KB, or else (marked ~) extrapolated from the sizes measured with a fit
t = a*size + b*size^2 (+ c), so a run on code that is quadratic can stop at sizes that finish. A text over
`--timeout` stops its path: its server is still busy with it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile import FAMILIES, make
from tests.servers import child_env, start_redis, start_service, start_worker

PATHS = ("batch", "http", "worker")


class TimedOut(Exception):
    pass


def per_100kb(times: dict[int, float]) -> tuple[float, bool]:
    """(seconds for a 100 KB text, extrapolated?) from {size in KB: seconds}: measured, or a non-negative
    least-squares fit of t = a*s + b*s^2 (+ c with three sizes or more) evaluated at 100 KB: the model's
    work is linear in the size, text handling that is not adds the square."""
    if 100 in times:
        return times[100], False
    if len(times) == 1:  # nothing to fit: scaled linearly
        (kb, seconds), = times.items()
        return seconds * 100 / kb, True
    import numpy as np
    from scipy.optimize import nnls

    s = np.array(sorted(times), dtype=float)
    columns = [s, s * s] + ([np.ones_like(s)] if len(s) >= 3 else [])
    coef, _ = nnls(np.stack(columns, 1), np.array([times[k] for k in sorted(times)]))
    at = [100.0, 100.0 ** 2, 1.0][:len(coef)]
    return float(np.dot(coef, at)), True


def run_batch(tmp: Path, model: str, sizes: list[int], families: list[str], timeout: float) -> dict:
    out = {}
    for name in families:
        for kb in sizes:
            path = tmp / f"{name}.{FAMILIES[name][0]}"
            path.write_text(make(name, kb * 1000))
            out[name, kb] = batch_seconds(path, tmp / "out.jsonl", model, timeout)
            report("batch", name, kb, out[name, kb], json.loads((tmp / "out.jsonl").read_text())["error"])
    return out


def batch_seconds(path: Path, output: Path, model: str, timeout: float) -> float:
    """Seconds from the progress bar's first appearance (the model is loaded then) to the summary line:
    reading, scoring and writing the file's record, the default path, progress bar and all (start-up and
    interpreter exit left out)."""
    proc = subprocess.Popen([sys.executable, "-m", "inference.score", str(path), "--output", str(output),
                             "--model", model], cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    marks, tail = {}, bytearray()

    def watch():  # tqdm's bar "0article [00:00, ?article/s]", then "1 records: ..." on stderr
        for chunk in iter(lambda: proc.stderr.read1(1 << 16), b""):
            tail.extend(chunk)
            for key, mark in (("start", b"article"), ("end", b" records: ")):
                if key not in marks and mark in tail:
                    marks[key] = time.perf_counter()
            del tail[:-4096]

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise TimedOut from None
    reader.join()
    if code != 0 or len(marks) < 2:
        raise RuntimeError(f"batch command exited {code}: {tail.decode(errors='replace')[-2000:]}")
    return marks["end"] - marks["start"]


def run_http(tmp: Path, model: str, sizes: list[int], families: list[str], timeout: float) -> dict:
    import httpx

    limit = max(sizes) * 1000 + 1000
    server, url = start_service(tmp / "service.log", f"model={json.dumps(model)}", f"max_text_bytes={limit}",
                                f"http.max_body_bytes={8 * limit}", f"http.request_timeout_s={timeout}",
                                'log_level="warning"', env=child_env())
    out = {}
    try:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            client.post("/v1/score", json={"id": "warm", "text": make("prose", 2000)})
            for name in families:
                for kb in sizes:
                    text = make(name, kb * 1000)
                    t0 = time.perf_counter()
                    try:
                        r = client.post("/v1/score", json={"id": name, "text": text})
                    except httpx.TimeoutException:
                        raise TimedOut from None
                    out[name, kb] = time.perf_counter() - t0
                    if r.status_code != 200:
                        raise RuntimeError(f"{name} {kb} KB: HTTP {r.status_code} {r.text[:300]}")
                    report("http", name, kb, out[name, kb], r.json().get("error"))
    finally:
        server.stop()
    return out


def run_worker(tmp: Path, model: str, sizes: list[int], families: list[str], timeout: float) -> dict:
    import redis

    rserver, port = start_redis(tmp / "redis")
    worker = None
    out = {}
    try:
        r = redis.Redis(port=port)
        # One message at a time; never reclaimed while it is being scored, however long that takes.
        worker = start_worker(tmp / "worker.log", f"model={json.dumps(model)}",
                              f"max_text_bytes={max(sizes) * 1000 + 1000}", f"worker.claim_idle_ms={int(timeout * 1000)}",
                              f'worker.redis_url="redis://127.0.0.1:{port}/0"', "worker.block_ms=50", consumer="bench")

        def verdict(mid: str, text: str) -> tuple[float, str | None]:
            n = r.xlen("unspin:verdicts")
            t0 = time.perf_counter()
            r.xadd("unspin:articles", {"id": mid, "text": text})
            try:
                worker.wait_until(lambda: r.xlen("unspin:verdicts") > n, timeout, f"verdict for {mid}", interval=0.01)
            except AssertionError:
                raise TimedOut from None
            record = json.loads(r.xrevrange("unspin:verdicts", count=1)[0][1][b"record"])
            return time.perf_counter() - t0, record.get("error")

        verdict("warm", make("prose", 2000))
        for name in families:
            for kb in sizes:
                out[name, kb], error = verdict(f"{name}-{kb}", make(name, kb * 1000))
                report("worker", name, kb, out[name, kb], error)
    finally:
        if worker is not None:
            worker.stop()
        rserver.stop()
    return out


def report(path: str, name: str, kb: int, seconds: float, error: str | None = None) -> None:
    note = f" (record error: {error})" if error else ""
    print(f"{path:6s} {name:14s} {kb:4d} KB  {seconds:8.2f} s{note}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model URI or directory (default: `model` of configs/inference.yaml)")
    ap.add_argument("--kb", type=int, nargs="+", default=[100], help="text sizes in KB (default 100)")
    ap.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    ap.add_argument("--timeout", type=float, default=900, help="seconds one text may take before its path stops")
    ap.add_argument("--output", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}")
    if args.model is None:
        from inference import settings

        args.model = settings.load().model
    sizes = sorted(set(args.kb))
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; code {ROOT}; "
          f"model {args.model}; sizes {sizes} KB", flush=True)
    runs = {"batch": run_batch, "http": run_http, "worker": run_worker}
    times: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="unspin-hostile-") as tmp:
        for path in args.paths:
            try:
                times[path] = runs[path](Path(tmp), args.model, sizes, args.families, args.timeout)
            except TimedOut:
                print(f"# {path}: a text took over {args.timeout:.0f} s; path stopped", flush=True)
    print(f"\nseconds per 100 KB ({'measured' if 100 in sizes else '~ extrapolated from ' + str(sizes) + ' KB'})")
    print(f"{'family':14s}" + "".join(f"{p:>12s}" for p in args.paths))
    figures = {}
    for name in args.families:
        cells = []
        for path in args.paths:
            got = {kb: s for (n, kb), s in times.get(path, {}).items() if n == name}
            if not got:
                cells.append(f"{'-':>12s}")
                continue
            value, extrapolated = per_100kb(got)
            figures.setdefault(name, {})[path] = {"per_100kb": round(value, 2), "extrapolated": extrapolated,
                                                  "measured": {str(k): round(v, 3) for k, v in got.items()}}
            cells.append(f"{('~' if extrapolated else '') + format(value, '.2f'):>12s}")
        print(f"{name:14s}" + "".join(cells), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"model": args.model, "sizes_kb": sizes, "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
