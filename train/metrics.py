"""The figures every stage reports: spun-word precision/recall/F1 and a text slice's classification figures."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from data.text import words
from inference.model.detector import Analysis


def word_figures(pred, gold) -> dict:
    """Spun-word F1, precision and recall of boolean word predictions against gold labels."""
    pred, gold = np.asarray(pred, dtype=bool), np.asarray(gold, dtype=bool)
    tp = float((pred & gold).sum())
    return {"word_f1": 2 * tp / max(1.0, pred.sum() + gold.sum()), "word_precision": tp / max(1.0, pred.sum()),
            "word_recall": tp / max(1.0, gold.sum())}


def word_scores(row: dict, a: Analysis, probs_of=lambda s: s.probs) -> np.ndarray:
    """P(spun) for every word of the row's text (0 for words outside scored prose); `probs_of(sentence)`: which
    word probabilities (stage one's by default; `Detector.word_probs`: the current mode's)."""
    by_start = {w[0]: p for s in a.sentences if (ps := probs_of(s)) is not None for w, p in zip(s.words, ps)}
    return np.array([by_start.get(s, 0.0) for s, _ in words(row["text"])], dtype=np.float64)


def slice_metrics(y, s, threshold: float) -> dict:
    y, s = np.asarray(y, dtype=int), np.asarray(s, dtype=np.float64)
    pred = s >= threshold
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    both = pos > 0 and neg > 0
    return {
        "n": len(y), "positives": pos,
        "precision": tp / pred.sum() if pred.sum() and pos else float("nan"),
        "recall": tp / pos if pos else float("nan"),
        "f1": 2 * tp / max(1, pred.sum() + pos) if pos else float("nan"),
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if both else float("nan"),
        "fpr": fp / neg if neg else float("nan"),
    }
