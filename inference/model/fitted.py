"""The detector's fitted state, as unspin.json stores it: what train/calibrate.py fits, and the detector's
`set_*` methods take.

Each class saves itself as a dict of its fields (`to_meta`) and reads itself back (`from_meta`): renaming a
field changes the saved format (`detector.FORMAT`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit


def sigmoid(x):
    return expit(np.asarray(x, dtype=np.float64))  # no overflow for a steep band curve far from its anchor


def logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


@dataclass
class LogisticCalibrator:
    """Logistic calibrator over standardised features (Platt scaling with several inputs)."""

    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]

    @classmethod
    def from_meta(cls, fields: dict | None) -> LogisticCalibrator | None:
        return cls(**fields) if fields else None

    def to_meta(self) -> dict:
        return asdict(self)

    def __call__(self, X) -> np.ndarray:
        X = (np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean) / self.scale
        return sigmoid(X @ np.asarray(self.coef) + self.intercept)


@dataclass
class StageOne:
    """Stage one: the sentence scorer's outputs calibrated into a probability per sentence, then per text."""

    word_threshold: float | None  # a word counts as flagged from this probability (a sentence and text feature);
    # None: the scorer gives no word probabilities (the baseline)
    sentence: LogisticCalibrator | None  # sentence features -> P(spun sentence); None: the first feature
    text: LogisticCalibrator | None  # text features -> P(spun text); None: the first feature

    @classmethod
    def from_meta(cls, fields: dict | None) -> StageOne | None:
        if not fields:
            return None
        return cls(fields["word_threshold"], LogisticCalibrator.from_meta(fields["sentence"]),
                   LogisticCalibrator.from_meta(fields["text"]))

    def to_meta(self) -> dict:
        return {"word_threshold": self.word_threshold, "sentence": self.sentence and self.sentence.to_meta(),
                "text": self.text and self.text.to_meta()}


@dataclass
class Reading:
    """The language model's reading (thorough mode): its settings (`reading.*` in configs/train.yaml) and the
    word-level fusion fitted with them."""

    max_alternatives: int  # alternatives priced per word
    max_words: int  # prose words read per text; past that, the sentences stage one finds likeliest spun
    precision: str  # the language model's weights (data/lm.py PRECISIONS)
    next_word_weight: float  # zero-shot score: weight of the next word's excess surprisal (detector.zero_shot)
    fusion: LogisticCalibrator | None = None  # (tagger logit, ratio, surprisal, known) -> P(spun word)

    @classmethod
    def from_meta(cls, fields: dict | None) -> Reading | None:
        if not fields:
            return None
        return cls(**{**fields, "fusion": LogisticCalibrator.from_meta(fields["fusion"])})

    def to_meta(self) -> dict:
        return {**asdict(self), "fusion": self.fusion and self.fusion.to_meta()}


@dataclass
class BandMap:
    """One length band's map from raw score to 0..1: a logistic curve through 0.5 at `at`."""

    at: float  # the raw score at which the band's clean texts of the worst domain are flagged at the set rate
    slope: float  # puts the median clean text of that band's loudest domain at 2 x the rate (train/calibrate.py)

    def __call__(self, raw) -> np.ndarray:
        return sigmoid(self.slope * (np.asarray(raw, dtype=np.float64) - self.at))


@dataclass
class Mode:
    """How a mode turns a text's features into its score. raw = zero_shot_weight * zero-shot score +
    tagger_weight * stage one's logit; fast: (0, 1), thorough: (1, w)."""

    zero_shot_weight: float
    tagger_weight: float
    bands: dict[str, BandMap]  # length band -> its curve
    span_threshold: float  # a word is highlighted from this probability (chosen for precision)

    @classmethod
    def from_meta(cls, fields: dict) -> Mode:
        return cls(**{**fields, "bands": {b: BandMap(**m) for b, m in fields["bands"].items()}})

    def to_meta(self) -> dict:
        return asdict(self)

    @property
    def reads(self) -> bool:
        """Whether the language model reads the texts in this mode."""
        return self.zero_shot_weight != 0

    def raw(self, features) -> np.ndarray:
        """features: rows of (zero-shot score, stage one's logit), as `Detector.features` gives them."""
        f = np.atleast_2d(np.asarray(features, dtype=np.float64))
        return self.zero_shot_weight * f[:, 0] + self.tagger_weight * f[:, 1]
