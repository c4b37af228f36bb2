"""Another runtime for the language model: llama.cpp (`llama-cpp-python`, built from source) reads the GGUF as
shipped (Q4_1 weights, no de-quantised copy), against the PyTorch model `data/lm.py` reads today. Same tokenizer
and ids, one sentence per llama.cpp call; prints reading seconds per article (every sentence of BBC-sized test
articles, thorough mode, the champion's alternatives) and how far each word's prices move from PyTorch float32.
Prints figures, asserts nothing.

    pip install llama-cpp-python   # not a project dependency: builds llama.cpp (cmake, a C++ compiler)
    MLFLOW_TRACKING_URI=sqlite:///mlflow.db python bench/probe_llama_cpp.py [--articles 20]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_lm import features
from bench_score import bench_articles

from data import cli


class LlamaCppLM:
    """`data.lm.CausalLM.score` on llama.cpp: the same token ids (the GGUF's tokenizer through transformers, for
    the character offsets), one sentence a call, every position's logits kept."""

    def __init__(self, torch_lm, threads: int, batch: int):
        from llama_cpp import Llama

        self.ref = torch_lm  # tokenizer, start token, max_tokens and the word-reading code are shared
        self.llm = Llama(model_path=str(torch_lm.gguf), n_ctx=torch_lm.max_tokens, n_batch=batch,
                         n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
        self.tokens = 0

    def score(self, texts, queries, groups=None):
        import torch

        enc = self.ref.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                                 truncation=True, max_length=self.ref.max_tokens - 1)
        out = []
        for ids, offsets, qs in zip(enc["input_ids"], enc["offset_mapping"], queries):
            ids, offsets = [self.ref.bos] + ids, [(0, 0)] + list(offsets)
            self.llm.reset()
            self.llm.eval(ids)
            self.tokens += len(ids)
            logits = torch.from_numpy(np.array(self.llm.scores[:len(ids)], dtype=np.float32))
            out.append(self.ref._read(logits, torch.logsumexp(logits, -1), ids, offsets, qs))
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=256, help="llama.cpp's n_batch (tokens a compute call)")
    args = ap.parse_args()
    cli.offline()
    os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + str(ROOT / "mlflow.db"))
    from data import lm
    from inference import Detector, settings

    det = Detector.load(settings.load().model, mode="thorough")
    texts = bench_articles(args.articles)
    reader = det.reader
    torch_lm, shipped = reader.lm, reader.precision
    # shared() holds both models under their own keys: the reader's precision picks one
    lm._shared[(lm.digest(torch_lm.gguf), "llama.cpp")] = fast = LlamaCppLM(torch_lm, args.threads, args.batch)
    print(f"{len(texts)} BBC-sized test articles, {sum(len(t.split()) for t in texts)} words, {args.threads} "
          f"threads; PyTorch in {torch_lm.precision}")
    runs = {}
    for name in ["torch", "llama.cpp"] * 2:  # alternating, twice: the second pair is warm
        got, seconds = features(det, texts, shipped if name == "torch" else "llama.cpp")  # seconds an article
        runs[name] = got
        print(f"{name:10s} {seconds:6.3f} s/article  {1 / seconds:5.2f} articles/s", flush=True)
    ref, got = runs["torch"], runs["llama.cpp"]
    gap = np.abs(got - ref)[:, :2]
    print(f"tokens read a pass by llama.cpp: {fast.tokens // 2}")
    print(f"|d ratio| mean {gap[:, 0].mean():.3f} p99 {np.quantile(gap[:, 0], 0.99):.3f}; "
          f"|d surprisal| mean {gap[:, 1].mean():.3f} p99 {np.quantile(gap[:, 1], 0.99):.3f}; "
          f"corr ratio {np.corrcoef(got[:, 0], ref[:, 0])[0, 1]:.4f}, surprisal {np.corrcoef(got[:, 1], ref[:, 1])[0, 1]:.4f}")
    scores = {}
    for name in ["torch", "llama.cpp"]:
        reader.precision = shipped if name == "torch" else "llama.cpp"
        scores[name] = np.array([r["score"] for r in det.score(texts)])
    print("largest text score difference:", float(np.abs(scores["torch"] - scores["llama.cpp"]).max()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
