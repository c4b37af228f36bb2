"""Tables shipped with a detector: suggestions (inference/model/suggest.py) and known tortured phrases.

Both come from the families' swap tables the dataset build wrote (`data.build.load_tables`), and only
from the families a model may know: a leave-one-family-out model never sees its held-out family's.
"""
from __future__ import annotations

from collections import Counter
from itertools import pairwise

from data.text import is_word, words
from inference.model.suggest import Suggester

LEXICON = "lexicon"


def counts(originals: list[str]) -> tuple[Counter, Counter]:
    """Lower-case word and word-pair counts of clean text."""
    unigram, bigram = Counter(), Counter()
    for text in originals:
        toks = [text[s:e].lower() for s, e in words(text)]
        unigram.update(t for t in toks if is_word(t))
        bigram.update(f"{a} {b}" for a, b in pairwise(toks) if is_word(a) and is_word(b))
    return unigram, bigram


def build_suggester(tables: dict[str, dict[str, list[str]]], families: list[str], originals: list[str],
                    min_bigram: int, neighbour_weight: float,
                    alternatives: dict[str, dict[str, list[str]]] | None = None) -> Suggester:
    """Reverse the swap tables of `families` (spun form -> originals it could have come from), add the general
    `alternatives` of those families' resources (a word -> its thesaurus synonyms: what it may have replaced),
    and count words and word pairs in the clean training `originals` to rank them. An original is kept only
    when it is made of words the originals use: those are the words a suggestion may give."""
    unigram, bigram = counts(originals)
    reverse: dict[str, list[str]] = {}

    def add(spun: str, original: str, family: str) -> None:
        if family != LEXICON and not all(w in unigram for w in original.lower().split()):
            return
        found = reverse.setdefault(spun.lower(), [])
        if original not in found and original.lower() != spun.lower():
            found.append(original)

    for family in sorted(families, key=lambda f: f != LEXICON):  # lexicon first: its reversals are exact phrases
        for original, spun_forms in tables.get(family, {}).items():
            for spun in spun_forms:
                add(spun, original, family)
    for family in families:  # then the broader thesauri, after every family's own reversals
        for word, alts in (alternatives or {}).get(family, {}).items():
            for alt in alts:
                add(word, alt, family)
    return Suggester(reverse, dict(unigram), {k: v for k, v in bigram.items() if v >= min_bigram}, neighbour_weight)


def known_phrases(tables: dict[str, dict[str, list[str]]], originals: list[str], min_words: int,
                  max_clean_hits: int) -> list[str]:
    """Tortured forms of the lexicon, minus those that clean news uses ("search engine")."""
    phrases = {t.lower() for forms in tables.get(LEXICON, {}).values() for t in forms if len(t.split()) >= min_words}
    longest = max((p.count(" ") + 1 for p in phrases), default=0)
    hits = Counter()
    for text in originals:
        toks = [text[s:e].lower() for s, e in words(text)]
        for n in range(min_words, longest + 1):
            hits.update(g for i in range(len(toks) - n + 1) if (g := " ".join(toks[i:i + n])) in phrases)
    return sorted(p for p in phrases if hits[p] <= max_clean_hits)
