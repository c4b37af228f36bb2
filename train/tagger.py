"""Fine-tune the encoder as a per-word spin tagger on the aligned pairs."""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from data.resources import minilm_path
from data.text import words
from inference.model.tagger import Tagger, encode, first_subtoken_labels
from train.config import TaggerSection
from train.metrics import word_figures


def windows(tokenizer, rows: list[dict], cfg: TaggerSection) -> list[tuple[list[int], list[int]]]:
    """(input ids, per-token targets) for every encoder window of every row."""
    word_lists = [[r["text"][s:e] for s, e in words(r["text"])] for r in rows]
    enc, owners = encode(tokenizer, word_lists, cfg.max_length, cfg.stride)
    return [(enc["input_ids"][k], first_subtoken_labels(wids, rows[i]["word_labels"]))
            for k, (i, wids) in enumerate(owners)]


def batches(items, batch_size: int, rng: random.Random):
    """Shuffled batches of similar length (less padding, same randomness across epochs)."""
    order = list(range(len(items)))
    rng.shuffle(order)
    pool = batch_size * 50
    out = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p:p + pool], key=lambda k: len(items[k][0]))
        out += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def word_f1(tagger: Tagger, rows: list[dict], threshold: float = 0.5) -> float:
    probs = tagger.word_probs([r["text"] for r in rows])
    gold = np.concatenate([np.asarray(r["word_labels"], dtype=bool) for r in rows])
    return word_figures(np.concatenate([p > threshold for p in probs]), gold)["word_f1"]


def fit_tagger(cfg: TaggerSection, train_rows: list[dict], val_rows: list[dict], seed: int,
               log: Callable[[str, float, int], None] = lambda *a: None, max_steps: int | None = None) -> Tagger:
    """The fine-tuned tagger, at the precision it is shipped (and calibrated) at."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    torch.set_num_threads(cfg.threads)
    base = cfg.base_model or str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForTokenClassification.from_pretrained(base, num_labels=2,
                                                            id2label={0: "clean", 1: "spun"},
                                                            label2id={"clean": 0, "spun": 1})
    items = windows(tokenizer, train_rows, cfg)
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(items) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    max_steps = max_steps or cfg.max_steps
    if max_steps:
        total = min(total, max_steps)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(optim, int(cfg.warmup * total), total)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, cfg.spun_weight]), ignore_index=-100)
    tagger = Tagger(model, tokenizer, cfg.max_length, cfg.stride, cfg.inference_batch_size, quantize=False)
    step, t0 = 0, time.time()
    bar = tqdm(total=total, desc=f"tagger: {len(items)} windows", unit="step", mininterval=10)
    for epoch in range(cfg.epochs):
        model.train()
        running = []
        for batch in batches(items, cfg.batch_size, rng):
            width = max(len(items[k][0]) for k in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            target = torch.full_like(ids, -100)
            for r, k in enumerate(batch):
                n = len(items[k][0])
                ids[r, :n], mask[r, :n], target[r, :n] = (torch.tensor(items[k][0]), 1, torch.tensor(items[k][1]))
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = loss_fn(logits.view(-1, 2), target.view(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad()
            step += 1
            running.append(loss.item())
            bar.update()
            if step % 50 == 0:
                log("train_loss", float(np.mean(running[-50:])), step)
                bar.set_postfix(loss=f"{np.mean(running[-50:]):.4f}", refresh=False)
            if step >= total:
                break
        model.eval()
        log("epoch_train_loss", float(np.mean(running)) if running else float("nan"), epoch)
        if val_rows:
            log("epoch_val_word_f1", word_f1(tagger, val_rows[: cfg.eval_rows]), epoch)
        if step >= total:
            break
    bar.close()
    log("train_seconds", time.time() - t0, 0)
    log("train_windows_per_second", step * cfg.batch_size / max(1e-9, time.time() - t0), 0)
    # Calibration and evaluation then see the precision the model is shipped to score with.
    return tagger.quantize(cfg.quantize)
