"""Fit the detector's calibrators and shipped threshold on the validation split."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from data.text import words
from inference.detector import Analysis, Detector, Linear, sentence_features, text_features
from train.config import CalibrationSection


def fit_linear(X, y, seed: int = 0) -> Linear:
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    mean, scale = X.mean(0), X.std(0)
    scale[scale == 0] = 1.0
    if len(set(y.tolist())) < 2:  # degenerate (tiny smoke data): constant probability
        p = float(np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3))
        return Linear([0.0] * X.shape[1], float(np.log(p / (1 - p))), mean.tolist(), scale.tolist())
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((X - mean) / scale, y)
    return Linear(clf.coef_[0].tolist(), float(clf.intercept_[0]), mean.tolist(), scale.tolist())


def word_scores(row: dict, a: Analysis) -> np.ndarray:
    """P(spun) for every word of the row's text (0 for words outside scored prose)."""
    by_start = {w[0]: p for s in a.sentences if s.probs is not None for w, p in zip(s.words, s.probs)}
    return np.array([by_start.get(s, 0.0) for s, _ in words(row["text"])], dtype=np.float64)


def sentence_labels(row: dict, a: Analysis) -> list[int]:
    gold = {s: lab for (s, _), lab in zip(words(row["text"]), row["word_labels"])}
    return [int(any(gold.get(w[0], 0) for w in s.words)) for s in a.sentences]


def best_word_threshold(rows, analyses) -> float:
    probs = np.concatenate([word_scores(r, a) for r, a in zip(rows, analyses)])
    gold = np.concatenate([np.asarray(r["word_labels"], dtype=bool) for r in rows])
    best = (0.0, 0.5)
    for t in np.arange(0.2, 0.81, 0.05):
        pred = probs > t
        f1 = 2 * (pred & gold).sum() / max(1, pred.sum() + gold.sum())
        best = max(best, (f1, round(float(t), 2)))
    return best[1]


def shipped_threshold(clean_scores, max_fp_rate: float, floor: float = 0.5) -> float:
    """Lowest threshold (not below `floor`) that flags at most `max_fp_rate` of the clean scores."""
    c = np.sort(np.asarray(clean_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(max_fp_rate * len(c)))
    return float(max(floor, c[allowed] + 1e-6)) if len(c) > allowed else floor


def fit_calibration(det: Detector, rows: list[dict], cfg: CalibrationSection, seed: int) -> dict:
    """Calibrate `det` in place on validation `rows`; returns validation metrics."""
    from train.evaluate import slice_metrics

    articles = [r for r in rows if r["level"] == "article"][: cfg.max_validation_articles]
    rows = [r for r in rows if r["level"] == "sentence"] + articles
    analyses = det.analyse([r["text"] for r in rows])
    sent_rows = [(r, a) for r, a in zip(rows, analyses) if r["level"] == "sentence"]
    if det.tagger is not None:
        det.word_threshold = cfg.word_threshold or best_word_threshold(*zip(*sent_rows))
    X = [sentence_features(s, det.word_threshold) for a in analyses for s in a.sentences]
    y = [lab for r, a in zip(rows, analyses) for lab in sentence_labels(r, a)]
    det.sentence_calibrator = fit_linear(X, y, seed)
    det.text_calibrator = None
    det.calibrate(analyses)
    det.text_calibrator = fit_linear([text_features(a, det.word_threshold) for a in analyses],
                                     [r["label"] for r in rows], seed)
    scores = np.array(det.calibrate(analyses))
    is_article = np.array([r["level"] == "article" for r in rows])
    labels = np.array([r["label"] for r in rows])
    human = np.array([r["spinner"] == "human" for r in rows])  # MRPC/PAWS: rewording is not spinning
    det.threshold = shipped_threshold(scores[is_article & (labels == 0)], cfg.max_clean_fp_rate)
    if det.meta["kind"] in cfg.paraphrase_bound:
        det.threshold = max(det.threshold, shipped_threshold(scores[human], cfg.max_paraphrase_fp_rate))
    art = slice_metrics(labels[is_article], scores[is_article], det.threshold)
    sent = slice_metrics(labels[~is_article], scores[~is_article], det.threshold)
    return {"val_article_roc_auc": art["roc_auc"], "val_article_pr_auc": art["pr_auc"],
            "val_article_fpr": art["fpr"], "val_article_f1": art["f1"], "val_sentence_f1": sent["f1"],
            "val_sentence_roc_auc": sent["roc_auc"], "val_paraphrase_fpr": float((scores[human] >= det.threshold).mean())
            if human.any() else float("nan"), "threshold": det.threshold, "word_threshold": det.word_threshold}
