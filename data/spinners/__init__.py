"""Spinner families: independent sources of synonym swaps, so that a whole family can be held out of
training and the detector judged on a spinner it never saw.

Each family module holds its config and `build(cfg, resources)`; `make_spinners` builds those asked for.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from data.spinners import frequency, lexicon, lm, moby, wordnet
from data.spinners.core import (  # noqa: F401 - the package's public names
    NUMBER_WORDS,
    DictionarySpinner,
    Edit,
    Spun,
    apply_edits,
    choose,
    rewrite,
    word_labels,
)

FAMILIES = {"moby": moby, "wordnet": wordnet, "lexicon": lexicon, "frequency": frequency, "lm": lm}


@dataclass
class SpinnersConfig:
    """The `spinners:` section of configs/data.yaml (every value set there)."""

    moby: moby.MobyConfig
    wordnet: wordnet.WordNetConfig
    lexicon: lexicon.LexiconConfig
    frequency: frequency.FrequencyConfig
    lm: lm.LMConfig


@dataclass
class Resources:
    """What families build their tables from, beyond their own packages."""

    lexicon_path: Path
    counts: Counter  # word frequencies of the clean originals (the frequency family trades for rarer words)

    def most_common(self, n: int) -> frozenset[str]:
        """The `n` commonest words: function words, which most families leave alone."""
        return frozenset(w for w, _ in self.counts.most_common(n))


def make_spinners(cfg: SpinnersConfig, resources: Resources, names=None) -> dict:
    """The families in `names` (default: all), built in FAMILIES order."""
    return {name: module.build(getattr(cfg, name), resources) for name, module in FAMILIES.items()
            if names is None or name in names}
