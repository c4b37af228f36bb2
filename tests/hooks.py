"""A scoring step whose duration the test controls, in any process: `scoring.loader=tests.hooks:held_detector`.

The real model scores as usual, except that:
  - a text holding `hold_text(path)` is held before scoring until `path` exists (the test creates it to
    release the text, or never does). Each hold adds a line to `<path>.held`, so the test knows scoring is
    under way, and how many times the text was tried. Tests wait on these files, never on the machine's speed;
  - a text holding DIE ends the scoring process at once (exit status 70), as a crash or the OOM killer would.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

MARK = "[unspin-test-hold:"
DIE = "[unspin-test-die]"


def hold_text(release: Path, words: str = "The minister said the talks had made good progress.") -> str:
    return f"{words} {MARK}{release}]"


def holds(release: Path) -> int:
    """How many times a text naming `release` has been held so far."""
    started = _started(release)
    return len(started.read_text().splitlines()) if started.exists() else 0


def held_detector(cfg):
    from inference.run_detector import load_detector

    return Held(load_detector(cfg))


class Held:
    """A Detector whose `score` first holds any marked text; everything else is the detector's own."""

    def __init__(self, detector):
        self._detector = detector

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def score(self, texts, ids=None):
        for text in [texts] if isinstance(texts, str) else texts:
            if isinstance(text, str) and MARK in text:
                _hold(Path(text.split(MARK, 1)[1].split("]", 1)[0]))
            if isinstance(text, str) and DIE in text:
                os._exit(70)
        return self._detector.score(texts, ids=ids)


def _started(release: Path) -> Path:
    return release.with_name(release.name + ".held")


def _hold(release: Path) -> None:
    with open(_started(release), "a") as f:
        f.write("held\n")
    while not release.exists():
        time.sleep(0.01)
