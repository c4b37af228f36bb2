"""The lexicon family: the tortured phrases of published paper-mill text, swapped in for the phrase they
stand for ("artificial intelligence" -> "counterfeit consciousness")."""
from __future__ import annotations

from dataclasses import dataclass, field

from data.dictionaries import load_tortured
from data.spinners.core import DictionarySpinner, Table


@dataclass
class LexiconConfig:
    rate: list[float] = field(default_factory=lambda: [0.6, 1.0])
    top_k: int = 3
    max_phrase_words: int = 4
    protect_capitalized: bool = False
    protect_numbers: bool = True
    include_uncertain: bool = False
    skip_expected: list[str] = field(default_factory=list)  # artefact rows ("and" -> "associate in nursingd")


def build(cfg: LexiconConfig, resources) -> DictionarySpinner:
    lexicon = Table(load_tortured(resources.lexicon_path, set(cfg.skip_expected), cfg.include_uncertain))
    return DictionarySpinner("lexicon", lexicon, cfg.max_phrase_words, cfg.rate, cfg.top_k, cfg.protect_capitalized,
                             False, cfg.protect_numbers)
