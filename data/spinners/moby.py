"""The Moby family: context-free swaps from the Moby thesaurus, the way cheap spinners build their table
(mutual synonyms ranked by overlap), with crude suffix inflection ("set abouts")."""
from __future__ import annotations

from dataclasses import dataclass, field

from data.dictionaries import Thesaurus, load_moby
from data.spinners.core import DictionarySpinner


@dataclass
class MobyConfig:
    rate: list[float] = field(default_factory=lambda: [0.05, 0.6])
    top_k: int = 5  # a swap picks among the k best-ranked synonyms
    rank_keep: int = 8
    max_phrase_words: int = 3
    protect_capitalized: bool = True
    protect_numbers: bool = True
    inflections: bool = True


def build(cfg: MobyConfig, resources) -> DictionarySpinner:
    thesaurus = Thesaurus(load_moby(), keep=cfg.rank_keep)
    return DictionarySpinner("moby", thesaurus.get, cfg.max_phrase_words, cfg.rate, cfg.top_k,
                             cfg.protect_capitalized, cfg.inflections, cfg.protect_numbers)
