"""Tables shipped with a detector: suggestions (inference/suggest.py) and known tortured phrases."""
from __future__ import annotations

from collections import Counter

from data import build as data_build
from data.config import data_root
from data.dictionaries import Thesaurus, load_moby, load_tortured
from data.spinners import SUFFIXES
from data.text import is_word, words
from inference.suggest import Suggester


def build_suggester(data_cfg: data_build.DataConfig, originals: list[str], keep: int, min_bigram: int,
                    context_weight: float) -> Suggester:
    """Reverse the spinners' dictionaries; count words and word pairs in clean `originals`.

    The thesaurus is reversed wider (`keep` synonyms per headword) than our spinner draws from, so
    other spinners' choices ("top" -> "best") are reversed too; the context decides among them.
    """
    sc = data_cfg.spinners
    unigram, bigram = Counter(), Counter()
    for text in originals:
        toks = [text[s:e].lower() for s, e in words(text)]
        unigram.update(t for t in toks if is_word(t))
        bigram.update(f"{a} {b}" for a, b in zip(toks, toks[1:]) if is_word(a) and is_word(b))
    # Only words (and their inflection stems) that occur in the originals can be suggested.
    vocabulary = set(unigram) | {w[: -len(suf)] + end for w in unigram for suf, end in SUFFIXES if w.endswith(suf)}
    vocabulary |= {f"{a} {b}" for a, b in (k.split(" ", 1) for k in bigram)}
    reverse: dict[str, list[str]] = {}
    table = Thesaurus(load_moby(), keep=keep, extra=sc.thesaurus.extra).table(vocabulary)
    lexicon = load_tortured(data_root(data_cfg.data_root) / data_cfg.sources.lexicon,
                            set(sc.lexicon.skip_expected), sc.lexicon.include_uncertain)
    for source in (lexicon, table):  # lexicon first: its reversals are exact phrases
        for original, spun_forms in source.items():
            for spun in spun_forms:
                reverse.setdefault(spun.lower(), [])
                if original not in reverse[spun.lower()]:
                    reverse[spun.lower()].append(original)
    return Suggester(reverse, dict(unigram), {k: v for k, v in bigram.items() if v >= min_bigram}, context_weight)


def known_phrases(data_cfg: data_build.DataConfig, originals: list[str], min_words: int, max_clean_hits: int) -> list[str]:
    """Tortured forms of the lexicon, minus those that clean news uses ("search engine")."""
    sc = data_cfg.spinners.lexicon
    lexicon = load_tortured(data_root(data_cfg.data_root) / data_cfg.sources.lexicon, set(sc.skip_expected),
                            sc.include_uncertain)
    phrases = {t.lower() for forms in lexicon.values() for t in forms if len(t.split()) >= min_words}
    longest = max((p.count(" ") + 1 for p in phrases), default=0)
    hits = Counter()
    for text in originals:
        toks = [text[s:e].lower() for s, e in words(text)]
        for n in range(min_words, longest + 1):
            hits.update(g for i in range(len(toks) - n + 1) if (g := " ".join(toks[i:i + n])) in phrases)
    return sorted(p for p in phrases if hits[p] <= max_clean_hits)
