"""The language model (data/lm.py) de-quantises its GGUF once and reads the copy it cached from then on; the
context stage's default precision prices words as full precision does."""
from __future__ import annotations

import logging
import shutil

from data.lm import CausalLM, WordQuery, cache_dir, gguf_file, keep

TEXT = "The minister said the talks had made good progress."


def likelihoods(lm: CausalLM) -> list:
    q = [WordQuery(TEXT.index(w), TEXT.index(w) + len(w), alts)
         for w, alts in [("made", ["produced", "achieved"]), ("progress", ["headway"])]]
    return [(w.logp, w.surprisal, w.alternatives.tolist()) for w in lm.score([TEXT], [q])[0]]


def test_the_cached_copy_gives_the_gguf_numbers_bit_for_bit(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = CausalLM(precision="float32")  # reads the GGUF and caches it
    cached = cache_dir(first.gguf)
    assert cached.parent == tmp_path / "cache/unspin" and (cached / "model.safetensors").exists()
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # nothing half-written left beside it
    again = CausalLM(precision="float32")  # reads the cache
    assert likelihoods(again) == likelihoods(first)
    assert again.tokenizer(TEXT)["input_ids"] == first.tokenizer(TEXT)["input_ids"]
    copy = gguf_file(tmp_path / "model")  # a detector's own copy of the same weights shares the cache
    copy.parent.mkdir()
    shutil.copyfile(first.gguf, copy)
    assert cache_dir(copy) == cached

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, "unspin.lm"):
        keep(first.model, first.tokenizer, blocked / "copy")  # a cache that cannot be written costs only time
    assert "cannot cache the de-quantised language model" in caplog.text


def test_bfloat16_prices_words_as_full_precision_does():
    """bfloat16 (the context stage's default) stays within a quarter of a nat of float32 (0.08 here); int8, its earlier
    default, moves them by up to 1.9 nats on this sentence (bench/README.md), so it is only an option."""
    full, half = likelihoods(CausalLM(precision="float32")), likelihoods(CausalLM(precision="bfloat16"))
    gaps = [abs(a - b) for f, h in zip(full, half) for a, b in zip([f[0], f[1], *f[2]], [h[0], h[1], *h[2]])]
    assert len(gaps) == 7 and max(gaps) < 0.25, gaps


def test_a_forward_call_reads_one_documents_texts_of_similar_length():
    """Each call holds one document's texts (a word's likelihood never depends on other documents), and texts of
    similar length, so padding is a small share of what it computes."""
    groups = [0] * 6 + [1] * 3
    lengths = [10, 40, 11, 39, 12, 80, 5, 5, 50]
    batches = CausalLM._batches(groups, lengths)
    assert sorted(k for b in batches for k in b) == list(range(9))
    assert all(len({groups[k] for k in b}) == 1 for b in batches)
    assert all(max(lengths[k] for k in b) * len(b) <= 1.15 * sum(lengths[k] for k in b) for b in batches)
    assert sorted(map(sorted, batches)) == [[0, 2, 4], [1, 3], [5], [6, 7], [8]]
