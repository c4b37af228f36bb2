"""Held-out evaluation: sentence, word, article, not-spinning and per-spinner figures."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from inference.detector import Detector
from train.calibrate import word_scores


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


def band(share: float) -> str:
    return "<20%" if share < 0.2 else "20-40%" if share < 0.4 else ">=40%"


def evaluate(det: Detector, rows: list[dict], prefix: str = "test") -> dict:
    """Score `rows` with `det`; returns {"metrics", "table", "scores", "rows"}."""
    analyses = det.analyse([r["text"] for r in rows])
    scores = np.array(det.calibrate(analyses))
    t = det.threshold
    y = np.array([r["label"] for r in rows])
    level = np.array([r["level"] for r in rows])
    kind = np.array([r["kind"] for r in rows])
    spinner = np.array([r["spinner"] for r in rows])
    source = np.array([r["source"] for r in rows])
    share = np.array([r["spun_share"] for r in rows])
    sent, art = level == "sentence", level == "article"
    clean_sent = sent & (y == 0)
    table = {}

    def add(name, mask_pos, mask_neg=None):
        mask = mask_pos | (mask_neg if mask_neg is not None else np.zeros_like(mask_pos))
        if mask.any():
            table[name] = slice_metrics(y[mask], scores[mask], t)

    add("sentence: all", sent)
    add("sentence: spun >=20% words", sent & (y == 1) & (share >= 0.2), clean_sent)
    for b in ("<20%", "20-40%", ">=40%"):
        add(f"sentence: spun {b} words", sent & (y == 1) & np.array([band(x) == b for x in share]), clean_sent)
    for name in sorted(set(spinner[sent & (y == 1)])):
        add(f"sentence: spinner={name}", sent & (y == 1) & (spinner == name), clean_sent)
    add("article: all", art)
    for k in ("spun", "partial"):
        for name in sorted(set(spinner[art & (kind == k)])):
            add(f"article: {k} {name}", art & (kind == k) & (spinner == name), art & (y == 0))
    add("not spinning: MRPC paraphrases", sent & (source == "mrpc"))
    add("not spinning: PAWS", sent & (source == "paws"))
    add("not spinning: verbatim copies", sent & (kind == "verbatim"))
    add("not spinning: clean articles", art & (y == 0))
    add("not spinning: clean sentences", sent & (kind == "original"))

    metrics = {}
    if det.tagger is not None:
        mask = [i for i in range(len(rows)) if sent[i]]
        probs = np.concatenate([word_scores(rows[i], analyses[i]) for i in mask]) if mask else np.zeros(0)
        gold = np.concatenate([np.asarray(rows[i]["word_labels"], dtype=bool) for i in mask]) if mask else np.zeros(0, bool)
        pred = probs > det.word_threshold
        tp = float((pred & gold).sum())
        metrics.update({f"{prefix}_word_f1": 2 * tp / max(1.0, pred.sum() + gold.sum()),
                        f"{prefix}_word_precision": tp / max(1.0, pred.sum()),
                        f"{prefix}_word_recall": tp / max(1.0, gold.sum())})
    keys = {"sentence: all": "sentence", "sentence: spun >=20% words": "sentence_spun20", "article: all": "article",
            "not spinning: MRPC paraphrases": "mrpc", "not spinning: clean articles": "clean_article",
            "not spinning: PAWS": "paws"}
    for name, m in table.items():
        short = keys.get(name)
        if short:
            for k in ("precision", "recall", "f1", "roc_auc", "pr_auc", "fpr"):
                if not np.isnan(m[k]):
                    metrics[f"{prefix}_{short}_{k}"] = float(m[k])
    return {"metrics": metrics, "table": table, "scores": scores, "rows": rows}


def format_table(title: str, table: dict) -> str:
    head = f"{'slice':38s} {'n':>6s} {'pos':>5s} {'prec':>6s} {'rec':>6s} {'F1':>6s} {'ROC':>6s} {'PR':>6s} {'FPR':>6s}"
    lines = [title, head, "-" * len(head)]
    fmt = lambda v: "   -  " if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:6.3f}"
    for name, m in table.items():
        lines.append(f"{name:38s} {m['n']:6d} {m['positives']:5d} {fmt(m['precision'])} {fmt(m['recall'])} "
                     f"{fmt(m['f1'])} {fmt(m['roc_auc'])} {fmt(m['pr_auc'])} {fmt(m['fpr'])}")
    return "\n".join(lines)


def worst_examples(result: dict, threshold: float, k: int) -> list[dict]:
    """The clean texts scored highest and the spun texts scored lowest."""
    rows, scores = result["rows"], result["scores"]
    wrong = [(abs(scores[i] - threshold), i) for i, r in enumerate(rows)
             if (scores[i] >= threshold) != bool(r["label"])]
    wrong.sort(reverse=True)
    return [{"id": rows[i]["id"], "level": rows[i]["level"], "kind": rows[i]["kind"], "spinner": rows[i]["spinner"],
             "label": int(rows[i]["label"]), "score": round(float(scores[i]), 4), "text": rows[i]["text"][:400]}
            for _, i in wrong[:k]]


def plots(result: dict, threshold: float, out_dir) -> list:
    """PR curves, calibration curve and article confusion matrix as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve

    rows, scores = result["rows"], result["scores"]
    y = np.array([r["label"] for r in rows])
    art = np.array([r["level"] == "article" for r in rows])
    paths = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, m in (("sentences", ~art), ("articles", art)):
        if len(set(y[m])) == 2:
            p, r, _ = precision_recall_curve(y[m], scores[m])
            ax.plot(r, p, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    ax.legend()
    paths.append(out_dir / "pr_curve.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, m in (("sentences", ~art), ("articles", art)):
        if len(set(y[m])) == 2:
            frac, mean = calibration_curve(y[m], scores[m], n_bins=10, strategy="quantile")
            ax.plot(mean, frac, marker="o", label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlabel="predicted P(spun)", ylabel="observed share spun", title="Calibration (test)")
    ax.legend()
    paths.append(out_dir / "calibration.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(4, 4))
    if art.any():
        ConfusionMatrixDisplay.from_predictions(y[art], (scores[art] >= threshold).astype(int),
                                                display_labels=["clean", "spun"], ax=ax, colorbar=False)
    ax.set_title(f"Articles at threshold {threshold:.3f}")
    paths.append(out_dir / "confusion_matrix.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close("all")
    return paths
