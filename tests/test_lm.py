"""The language model (data/lm.py) de-quantises its GGUF once and reads the copy it cached from then on."""
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
    first = CausalLM(quantize=False)  # reads the GGUF and caches it
    cached = cache_dir(first.gguf)
    assert cached.parent == tmp_path / "cache/unspin" and (cached / "model.safetensors").exists()
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # nothing half-written left beside it
    again = CausalLM(quantize=False)  # reads the cache
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
