"""Time and size of the HTML report for 1,000 and 10,000 records: `python bench/bench_report.py` (in `make bench`).

The records are BBC articles of the data root (cycled, with distinct ids) with score records shaped as the model's:
their real sentence offsets, one flagged span in about 12 words, half with a suggestion. What a report costs does
not depend on which model wrote the records, so none is loaded. For each size it prints:
  - write: seconds for inference.report.Report to take the records and write the file, and the file's size;
  - open: seconds for headless chromium to load the file and draw the first page (the table and its articles);
  - next page: seconds to draw the next page.
Figures only (a report that draws no article stops the script).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import configfile as cfglib
from data.text import sentences, words
from inference.report import Report


def articles() -> list[str]:
    raw = cfglib.read_yaml(ROOT / "configs/data.yaml")
    path = cfglib.data_root(raw["data_root"]) / "news/bbc_news.jsonl"
    with open(path, encoding="utf-8") as f:
        return [t for t in (json.loads(line).get("text") for line in f) if isinstance(t, str) and t.strip()]


def record(rid: str, text: str, k: int) -> dict:
    sents = [{"start": a, "end": b, "score": round((a * 7 + k) % 100 / 100, 3)} for a, b in sentences(text)]
    spans = []
    for n, (a, b) in enumerate(words(text)):
        if (n + k) % 12 == 0 and text[a:b].isalpha():
            spans.append({"start": a, "end": b, "text": text[a:b], "score": 0.6 + (n % 4) / 10,
                          "suggestion": "original" if n % 24 == 0 else None})
    score = round(sum(s["score"] for s in sents) / max(1, len(sents)), 4)
    return {"id": rid, "score": score, "label": "spun" if score >= 0.5 else "clean", "threshold": 0.5,
            "model": {"name": "unspin", "version": "bench"}, "sentences": sents, "spans": spans, "error": None}


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args(argv)
    texts = articles()
    records = [(texts[k % len(texts)], record(f"bbc-{k:05d}", texts[k % len(texts)], k)) for k in range(max(args.records))]
    driver = browser()
    print(f"{'records':>8s} {'write s':>8s} {'size MB':>8s} {'open s':>7s} {'next page s':>11s}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.records:
                path = Path(tmp) / f"report-{n}.html"
                t0 = time.perf_counter()
                report = Report(path, "score", f"bench: {n} records")
                for text, rec in records[:n]:
                    report.add_score(text, rec)
                report.close(f"{n} records")
                write = time.perf_counter() - t0
                t1 = time.perf_counter()
                driver.get(path.as_uri())  # returns after the load event: the first page is drawn by then
                opened = time.perf_counter() - t1
                assert driver.execute_script("return document.querySelectorAll('.card').length") > 0
                t2 = time.perf_counter()
                driver.execute_script("document.querySelectorAll('.controls button')[1].click()")
                turned = time.perf_counter() - t2
                print(f"{n:8d} {write:8.2f} {path.stat().st_size / 1e6:8.1f} {opened:7.2f} {turned:11.2f}", flush=True)
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
