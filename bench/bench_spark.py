"""Spark benchmark: the same BBC articles through the batch command, Spark local[1] and Spark local[2], each a
command run as a user runs it. Prints articles/s (end to end, and the command's own figure, which leaves out
start-up), the scaling local[2]/local[1], and peak memory per process. Asserts nothing.

    python bench/bench_spark.py [--articles 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VARIANTS = {
    "batch command": lambda src, out: ["inference.score", src, "--output", f"{out}.jsonl", "--quiet"],
    "spark local[1]": lambda src, out: ["inference.spark", "--input", src, "--output", f"{out}.parquet",
                                        "--master", "local[1]", "--quiet"],
    "spark local[2]": lambda src, out: ["inference.spark", "--input", src, "--output", f"{out}.parquet",
                                        "--master", "local[2]", "--quiet"],
}


def bbc_articles(n: int) -> list[dict]:
    """The first `n` BBC articles of the raw corpus (the data root of configs/data.yaml)."""
    from data.build import load_config
    from data.configfile import data_root

    path = data_root(load_config(ROOT / "configs/data.yaml").data_root) / "news/bbc_news.jsonl"
    rows = [json.loads(line) for line in path.open()]
    return [{"id": r["id"], "text": r["text"]} for r in rows if r.get("text", "").strip()][:n]


def role(p: psutil.Process, top: int) -> str:
    if p.pid == top:
        return "command"
    if p.name() == "java":
        return "JVM (driver + local executor)"
    return "Python worker" if "pyspark.daemon" in " ".join(p.cmdline()) else "other"


def measure(args: list[str]) -> dict:
    """Run `python -m ARGS`, sampling the RSS of it and its children twice a second."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    peak: dict[int, tuple[str, int]] = {}
    top = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in [top, *top.children(recursive=True)]:
                rss = p.memory_info().rss
                if rss > peak.get(p.pid, ("", 0))[1]:
                    peak[p.pid] = (role(p, proc.pid), rss)
        except psutil.Error:  # a process ended while we looked
            pass
        time.sleep(0.5)
    seconds = time.perf_counter() - t0
    stderr = proc.stderr.read()
    own = re.search(r"([\d.]+) articles/s", stderr)
    return {"ok": proc.returncode == 0, "seconds": seconds, "own_rate": float(own.group(1)) if own else None,
            "peaks": sorted(peak.values()), "stderr": stderr}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=2000)
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + str(ROOT / "mlflow.db"))
    articles = bbc_articles(args.articles)
    words = sum(len(a["text"].split()) for a in articles) / len(articles)
    print(f"Spark scoring, {len(articles)} BBC articles (mean {words:.0f} words), {os.cpu_count()} CPU cores, "
          f"load average before: {os.getloadavg()[0]:.1f}")
    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        src = Path(tmp, "articles.jsonl")
        src.write_text("".join(json.dumps(a) + "\n" for a in articles))
        print(f"{'variant':16s} {'seconds':>8s} {'articles/s':>10s} {'own figure':>10s}  peak RSS per process (MB)")
        for name, command in VARIANTS.items():
            r = measure(command(str(src), str(Path(tmp, re.sub(r"\W+", "_", name)))))
            if not r["ok"]:
                print(f"{name:16s} failed: {r['stderr'].strip().splitlines()[-1:]}")
                continue
            rates[name] = len(articles) / r["seconds"]
            peaks = ", ".join(f"{who} {rss / 2**20:.0f}" for who, rss in r["peaks"] if who != "other")
            print(f"{name:16s} {r['seconds']:8.1f} {rates[name]:10.2f} {r['own_rate'] or float('nan'):10.2f}  {peaks}")
    if {"spark local[1]", "spark local[2]"} <= set(rates):
        print(f"scaling local[2] / local[1]: {rates['spark local[2]'] / rates['spark local[1]']:.2f}x")
    if {"spark local[2]", "batch command"} <= set(rates):
        print(f"local[2] / batch command: {rates['spark local[2]'] / rates['batch command']:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f} (articles/s are end to end: start-up and model loading "
          f"included; 'own figure' is what the command reports, scoring and writing only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
