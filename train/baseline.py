"""The yardstick: TF-IDF of hashed word and character n-grams with logistic regression, per sentence."""
from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from inference.model.detector import Detector
from inference.model.ngrams import HashedTfidf
from train.config import BaselineSection


def fit_baseline(cfg: BaselineSection, texts: list[str], labels: list[int], seed: int) -> Detector:
    features = HashedTfidf(tuple(cfg.word_ngrams), tuple(cfg.char_ngrams), cfg.hash_bits, cfg.min_df)
    model = Pipeline([("features", features),
                      ("clf", LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed))])
    model.fit(texts, labels)
    return Detector("baseline", baseline=model)
