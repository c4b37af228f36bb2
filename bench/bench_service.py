"""Service and worker throughput: `python bench/bench_service.py` (part of `make bench`).

Starts the real servers as subprocesses (uvicorn service, redis-server on a free port, the queue
worker), scores ~400-word news articles and prints:
  - HTTP POST /v1/score: requests/s and p50/p95 latency at concurrency 1 and 8;
  - worker: messages/s from XADD of a backlog to the last verdict;
  - memory of each server's process tree after the run (the server, its fork server and scoring process):
    RSS summed, and PSS (shared pages counted once: what the tree really costs).
Figures only: nothing is asserted about times. Articles come from the BBC corpus under the data root
(configs/data.yaml / $UNSPIN_DATA_ROOT), cut to whole sentences near the word target.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import child_env, start_redis, start_service, start_worker

FALLBACK = [
    "The foreign minister said on Monday that talks with the neighbouring country had made good progress.",
    "Officials expect the agreement to open the border to trade and to strengthen economic support for farmers.",
    "The company reported a sharp rise in quarterly profits, helped by strong sales of its new phones.",
    "Analysts had expected a smaller increase, and shares in the firm rose five percent in early trading.",
    "The government announced plans to build thousands of new homes over the next ten years.",
    "Critics said the scheme was unlikely to help first-time buyers, who face high prices in most regions.",
]


def articles(n: int, words: int) -> tuple[list[str], str]:
    """n articles of about `words` words (whole sentences), and where they came from."""
    from data import configfile as cfglib
    from data.text import sentences

    try:
        root = cfglib.data_root(cfglib.read_yaml(ROOT / "configs/data.yaml")["data_root"])
        if not root.is_absolute():
            root = (ROOT / root).resolve()
        path = root / "news" / "bbc_news.jsonl"
        texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        source = f"{path} ({len(texts)} articles)"
    except (OSError, ValueError, KeyError):
        texts, source = [" ".join(FALLBACK)], "built-in paragraphs (no BBC corpus found)"
    out, k = [], 0
    while len(out) < n:
        text = texts[k % len(texts)]
        k += 1
        while len(text.split()) < words:  # short article: repeat it
            text = text + "\n\n" + text
        cut = next((e for s, e in sentences(text) if len(text[:e].split()) >= words), len(text))
        out.append(text[:cut])
    return out, source


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


def bench_http(url: str, texts: list[str], concurrency: int, requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = []
    lock = threading.Lock()
    next_i = iter(range(requests))

    def client():
        with httpx.Client(base_url=url, timeout=300) as c:
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = c.post("/v1/score", json={"id": f"b{i}", "text": texts[i % len(texts)]})
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status_code != 200 or r.json().get("error"):
                        errors.append(r.status_code)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": requests, "errors": len(errors), "seconds": round(wall, 2),
            "requests_per_s": round(requests / wall, 2), "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p95_ms": round(1000 * percentile(latencies, 95), 1)}


def tree_memory(pid: int) -> dict:
    """RSS and PSS (MB) of a process and all its descendants."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    rss = pss = 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + info.rss, pss + info.pss
    return {"processes": len(procs), "rss_mb": round(rss / 2**20), "pss_mb": round(pss / 2**20)}


def memory_line(mem: dict) -> str:
    return f"{mem['processes']} processes, PSS {mem['pss_mb']} MB (RSS summed {mem['rss_mb']} MB)"


def bench_worker(tmp: Path, texts: list[str], messages: int, model_overrides: list[str], batch_size: int) -> dict:
    import redis

    rserver, port = start_redis(tmp / "redis")
    r = redis.Redis(port=port)
    worker = None
    try:
        ovr = model_overrides + [f"worker.redis_url=\"redis://127.0.0.1:{port}/0\"", f"worker.batch_size={batch_size}"]
        worker = start_worker(tmp / "worker.log", *ovr, consumer="bench")
        warm = 8
        for i in range(warm):
            r.xadd("unspin:articles", {"id": f"warm-{i}", "text": texts[i % len(texts)]})
        worker.wait_until(lambda: r.xlen("unspin:verdicts") >= warm, 600, "worker warm-up", interval=0.05)
        pipe = r.pipeline(transaction=False)
        for i in range(messages):
            pipe.xadd("unspin:articles", {"id": f"m-{i}", "text": texts[i % len(texts)]})
        t0 = time.perf_counter()
        pipe.execute()
        worker.wait_until(lambda: r.xlen("unspin:verdicts") >= warm + messages, 3600, "worker backlog",
                          interval=0.05)
        wall = time.perf_counter() - t0
        spun = r.xlen("unspin:review")
        return {"messages": messages, "batch_size": batch_size, "seconds": round(wall, 2),
                "messages_per_s": round(messages / wall, 2), "review": spun, "dead": r.xlen("unspin:dead"),
                "memory": tree_memory(worker.pid)}
    finally:
        if worker is not None:
            worker.stop()
        rserver.stop()


def bench_all_http(tmp: Path, texts: list[str], overrides: list[str], args, figures: dict) -> None:
    server, url = start_service(tmp / "service.log", "http.request_timeout_s=600", "log_level=\"warning\"",
                                *overrides, env=child_env())
    try:
        import httpx

        model = httpx.get(f"{url}/v1/model", timeout=30).json()
        figures["model"] = model
        print(f"# model {model['name']} v{model['version']} ({model['uri']})", flush=True)
        bench_http(url, texts, 1, 4)  # warm-up
        for c in args.concurrency:
            row = bench_http(url, texts, c, args.requests)
            figures["http"].append(row)
            print(f"HTTP  concurrency {c}: {row['requests_per_s']:.2f} req/s, p50 {row['p50_ms']:.0f} ms, "
                  f"p95 {row['p95_ms']:.0f} ms ({row['requests']} requests, {row['errors']} errors)", flush=True)
        figures["http_memory"] = tree_memory(server.pid)
        print(f"HTTP  memory: {memory_line(figures['http_memory'])}", flush=True)
    finally:
        server.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model URI or directory (default: configs/service.yaml)")
    ap.add_argument("--words", type=int, default=400)
    ap.add_argument("--requests", type=int, default=80, help="HTTP requests per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--messages", type=int, default=300, help="worker backlog size")
    ap.add_argument("--batch-size", type=int, default=16, help="worker batch size")
    ap.add_argument("--only", choices=["http", "worker"], help="run one half only")
    ap.add_argument("--output", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}")
    texts, source = articles(max(args.requests, 64), args.words)
    overrides = [f"model={json.dumps(args.model)}"] if args.model else []
    figures = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
               "articles": f"{len(texts)} x ~{args.words} words from {source}", "http": [], "worker": None}
    print(f"# {figures['machine']}; {figures['articles']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="unspin-bench-") as tmp:
        tmp = Path(tmp)
        if args.only != "worker":
            bench_all_http(tmp, texts, overrides, args, figures)
        if args.only != "http":
            row = bench_worker(tmp, texts, args.messages, overrides, args.batch_size)
            figures["worker"] = row
            print(f"WORKER batch {row['batch_size']}: {row['messages_per_s']:.2f} messages/s "
                  f"({row['messages']} messages in {row['seconds']:.1f} s, {row['review']} to review, "
                  f"{row['dead']} dead); memory: {memory_line(row['memory'])}", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
