"""The lexicon family: the tortured phrases of published paper-mill text, swapped in for the phrase they
stand for ("artificial intelligence" -> "counterfeit consciousness")."""
from __future__ import annotations

from dataclasses import dataclass

from data.dictionaries import load_tortured
from data.spinners.core import DictionarySpinner, Table


@dataclass
class LexiconConfig:
    rate: list[float]
    top_k: int
    max_phrase_words: int
    protect_capitalized: bool
    protect_numbers: bool
    include_uncertain: bool
    skip_expected: list[str]  # artefact rows ("and" -> "associate in nursingd")


def build(cfg: LexiconConfig, resources) -> DictionarySpinner:
    lexicon = Table(load_tortured(resources.lexicon_path, set(cfg.skip_expected), cfg.include_uncertain))
    return DictionarySpinner("lexicon", lexicon, cfg.max_phrase_words, cfg.rate, cfg.top_k, cfg.protect_capitalized,
                             False, cfg.protect_numbers)
