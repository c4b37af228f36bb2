"""The yardstick: TF-IDF word and character n-grams with logistic regression, per sentence."""
from __future__ import annotations

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from inference.detector import Detector
from train.config import BaselineSection


def fit_baseline(cfg: BaselineSection, texts: list[str], labels: list[int], seed: int) -> Detector:
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=tuple(cfg.word_ngrams), min_df=2, sublinear_tf=True,
                                  max_features=cfg.max_features)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(cfg.char_ngrams), min_df=3,
                                  sublinear_tf=True, max_features=cfg.max_features)),
    ])
    model = Pipeline([("features", features),
                      ("clf", LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed))])
    model.fit(texts, labels)
    return Detector({"kind": "baseline"}, baseline=model)
