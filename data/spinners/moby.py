"""The Moby family: context-free swaps from the Moby thesaurus, the way cheap spinners build their table
(mutual synonyms ranked by overlap), with crude suffix inflection ("set abouts")."""
from __future__ import annotations

from dataclasses import dataclass

from data.dictionaries import Thesaurus, load_moby
from data.spinners.core import DictionarySpinner


@dataclass
class MobyConfig:
    rate: list[float]
    top_k: int  # a swap picks among the k best-ranked synonyms
    rank_keep: int
    max_phrase_words: int
    protect_capitalized: bool
    protect_numbers: bool
    inflections: bool


def build(cfg: MobyConfig, resources) -> DictionarySpinner:
    thesaurus = Thesaurus(load_moby(), keep=cfg.rank_keep)
    return DictionarySpinner("moby", thesaurus.get, cfg.max_phrase_words, cfg.rate, cfg.top_k,
                             cfg.protect_capitalized, cfg.inflections, cfg.protect_numbers)
