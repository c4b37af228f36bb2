"""The WordNet family: lemmas of a word's most frequent senses (Debian's wordnet-base through NLTK),
re-inflected with the word's own ending; unlike Moby spinners it also swaps capitalised words."""
from __future__ import annotations

from dataclasses import dataclass

from data.dictionaries import base_forms, inflect, load_wordnet
from data.spinners.core import DictionarySpinner


@dataclass
class WordNetConfig:
    path: str
    rate: list[float]
    top_k: int
    max_senses: int  # lemmas of a word's most frequent senses only (SemCor counts of the word in each)
    min_sense_count: int  # senses the word was never tagged with are not used
    skip_common: int  # the commonest words of the originals (function words) are left alone
    max_phrase_words: int
    protect_capitalized: bool
    protect_numbers: bool


class WordNetLookup:
    def __init__(self, wn, max_senses: int, min_sense_count: int):
        self.wn, self.max_senses, self.min_count, self.cache = wn, max_senses, min_sense_count, {}

    def __call__(self, key: str) -> list[str]:
        if key not in self.cache:
            self.cache[key] = self._find(key)
        return self.cache[key]

    def _find(self, key: str) -> list[str]:
        lemma_key = key.replace(" ", "_")
        senses = []  # (how often the word had this sense, synset, its base form, suffix to glue back)
        for pos in ("n", "v", "a", "r"):
            base = self.wn.morphy(lemma_key, pos)
            suffix = None if base is None else "" if base == lemma_key else _suffix(lemma_key, base)
            if suffix is None:
                continue  # not this part of speech, or an irregular form ("ran"): left alone
            for synset in self.wn.synsets(base, pos):
                count = sum(l.count() for l in synset.lemmas() if l.name().lower() == base)
                if count >= self.min_count:
                    senses.append((count, synset, base, suffix))
        senses.sort(key=lambda x: -x[0])
        out: list[str] = []
        for _, synset, base, suffix in senses[: self.max_senses]:
            for lemma in synset.lemma_names():
                cand = lemma.replace("_", " ")
                if lemma.lower() == base or not cand.replace(" ", "").isalpha() or (suffix and " " in cand):
                    continue
                cand = inflect(cand, suffix) if suffix else cand
                if cand.lower() != key and cand not in out:
                    out.append(cand)
        return out


def _suffix(word: str, base: str) -> str | None:
    return next((suffix for stem, suffix in base_forms(word, 0) if stem == base), None)


def build(cfg: WordNetConfig, resources) -> DictionarySpinner:
    lookup = WordNetLookup(load_wordnet(cfg.path), cfg.max_senses, cfg.min_sense_count)
    return DictionarySpinner("wordnet", lookup, cfg.max_phrase_words, cfg.rate, cfg.top_k, cfg.protect_capitalized,
                             False, cfg.protect_numbers, resources.most_common(cfg.skip_common))
