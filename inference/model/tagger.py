"""The per-word spin tagger: a token-classification encoder that says, for each word, P(spun).

Words are those of `data.text.words`, the same split the training labels use. A word's probability
is read at its first sub-word token. Text longer than the encoder's window is cut into overlapping
windows and stitched back.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.text import words


def encode(tokenizer, word_lists: list[list[str]], max_length: int, stride: int):
    """Tokenise pre-split words; returns the encoding and, per window, (sample index, word ids)."""
    enc = tokenizer(word_lists, is_split_into_words=True, truncation=True, max_length=max_length,
                    stride=stride, return_overflowing_tokens=True, padding=False)
    owners = enc["overflow_to_sample_mapping"]
    return enc, [(owners[i], enc.word_ids(i)) for i in range(len(enc["input_ids"]))]


def first_subtoken_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Training targets: each word's label at its first sub-word, -100 (ignored) elsewhere."""
    out, prev = [], None
    for w in word_ids:
        out.append(-100 if w is None or w == prev else int(word_labels[w]))
        prev = w
    return out


class Tagger:
    """quantize: score with dynamic int8 weights in the linear layers (twice as fast on CPU; accuracy
    figures: bench/README.md). The full-precision weights are kept: they are what `save` writes."""

    def __init__(self, model, tokenizer, max_length: int, stride: int, batch_size: int, quantize: bool):
        """max_length, stride: the encoder's window and its overlap, in tokens; batch_size: windows per forward
        call (configs: `tagger.*`)."""
        self.weights, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.stride, self.batch_size = max_length, stride, batch_size
        self.quantize(quantize)

    @property
    def settings(self) -> dict:
        """What `load` needs besides the weights (the detector saves it in unspin.json)."""
        return {"max_length": self.max_length, "stride": self.stride, "batch_size": self.batch_size,
                "quantize": self.quantized}

    def quantize(self, on: bool = True) -> Tagger:
        import torch

        self.quantized = bool(on)
        self.model = (torch.ao.quantization.quantize_dynamic(self.weights, {torch.nn.Linear}, dtype=torch.qint8)
                      if on else self.weights)
        return self

    @classmethod
    def load(cls, path: str | Path, settings: dict, quantize: bool | None = None) -> Tagger:
        """settings: as `settings` gave them; quantize: the precision to score at (None: the saved one)."""
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        torch.set_num_threads(int(os.environ.get("UNSPIN_THREADS", torch.get_num_threads())))
        model = AutoModelForTokenClassification.from_pretrained(str(path))
        kw = settings if quantize is None else {**settings, "quantize": quantize}
        return cls(model, AutoTokenizer.from_pretrained(str(path)), **kw)

    def save(self, path: str | Path) -> None:
        self.weights.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def _batches(self, input_ids: list[list[int]], groups: list[int]) -> list[list[int]]:
        """Window indices per forward call. Dynamic int8 scales activations by the largest value in the call,
        padding included: a quantized model reads each group's (document's) windows alone, so that a text's
        score never depends on the texts batched beside it. Full precision batches windows of similar length."""
        if self.quantized:
            mine: dict[int, list[int]] = {}
            for k, g in enumerate(groups):
                mine.setdefault(g, []).append(k)
            return [ks[b:b + self.batch_size] for ks in mine.values() for b in range(0, len(ks), self.batch_size)]
        order = sorted(range(len(input_ids)), key=lambda k: len(input_ids[k]))
        return [order[b:b + self.batch_size] for b in range(0, len(order), self.batch_size)]

    def word_probs(self, texts: list[str], groups: list[int] | None = None) -> list[np.ndarray]:
        """P(spun) for each word of each text (as `data.text.words` splits it). `groups`: the document each
        text belongs to (a text is its own document by default)."""
        import torch

        word_lists = [[t[s:e] for s, e in words(t)] for t in texts]
        out = [np.zeros(len(w), dtype=np.float32) for w in word_lists]
        seen = [np.zeros(len(w), dtype=bool) for w in word_lists]
        todo = [i for i, w in enumerate(word_lists) if w]
        if not todo:
            return out
        enc, windows = encode(self.tokenizer, [word_lists[i] for i in todo], self.max_length, self.stride)
        with torch.inference_mode():
            owner = [todo[w[0]] if groups is None else groups[todo[w[0]]] for w in windows]
            for batch in self._batches(enc["input_ids"], owner):
                width = max(len(enc["input_ids"][k]) for k in batch)
                ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, k in enumerate(batch):
                    row = enc["input_ids"][k]
                    ids[r, :len(row)] = torch.tensor(row)
                    mask[r, :len(row)] = 1
                probs = torch.softmax(self.model(input_ids=ids, attention_mask=mask).logits, -1)[..., 1].numpy()
                for r, k in enumerate(batch):
                    sample, wids = windows[k]
                    i, prev = todo[sample], None
                    for pos, w in enumerate(wids):
                        if w is not None and w != prev and not seen[i][w]:
                            out[i][w], seen[i][w] = probs[r, pos], True
                        prev = w
        return out
