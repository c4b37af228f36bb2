"""Held-out evaluation: sentence, word, article, not-spinning and per-spinner figures."""
from __future__ import annotations

import numpy as np

from inference.model.detector import Detector
from train.calibrate import read_all
from train.metrics import slice_metrics, word_figures, word_scores

SPUN_SHARE_BUCKETS = ("<20%", "20-40%", ">=40%")


def spun_share_bucket(share: float) -> str:
    """Which of SPUN_SHARE_BUCKETS a spun sentence's share of swapped words falls in."""
    return "<20%" if share < 0.2 else "20-40%" if share < 0.4 else ">=40%"


def word_metrics(det: Detector, rows: list[dict], analyses) -> dict:
    """Spun-word precision, recall and F1 over every word of `rows`: the words the current mode highlights."""
    if not rows:
        return {}
    probs = np.concatenate([word_scores(r, a, det.word_probs) for r, a in zip(rows, analyses)])
    gold = np.concatenate([np.asarray(r["word_labels"], dtype=bool) for r in rows])
    return word_figures(probs > det.modes_[det.mode].span_threshold, gold)


def span_original(row: dict, start: int, end: int) -> str | None:
    """What text[start:end] said before spinning, if the span holds whole edits (else None)."""
    inside = [e for e in row["edits"] if e["dst_start"] < end and start < e["dst_end"]]
    if not inside or inside[0]["dst_start"] < start or inside[-1]["dst_end"] > end:
        return None
    out, pos = [], start
    for e in inside:
        out += [row["text"][pos:e["dst_start"]], e["src"]]
        pos = e["dst_end"]
    return "".join(out + [row["text"][pos:end]])


def suggestion_accuracy(rows: list[dict], records: list[dict]) -> tuple[float, int]:
    """Share of flagged spans that hold swaps for which the suggestion is the original wording."""
    hits = total = 0
    for row, rec in zip(rows, records):
        for span in rec["spans"]:
            if not any(e["dst_start"] < span["end"] and span["start"] < e["dst_end"] for e in row["edits"]):
                continue
            total += 1
            want = span_original(row, span["start"], span["end"])
            hits += bool(want and span["suggestion"] and span["suggestion"].lower() == want.lower())
    return (hits / total if total else float("nan")), total


def evaluate(det: Detector, rows: list[dict], prefix: str = "test", analyse=None) -> dict:
    """Score `rows` with `det` (analysed by `analyse`, `det.analyse` by default); returns {"metrics", "table",
    "scores", "rows"}."""
    analyses = (analyse or det.analyse)([r["text"] for r in rows])
    if det.modes_[det.mode].reads and det.reader is not None:
        read_all(det, analyses, f"language model: {prefix} texts")
    scores = np.array(det.text_scores(analyses))
    t = det.threshold
    y = np.array([r["label"] for r in rows])
    level = np.array([r["level"] for r in rows])
    kind = np.array([r["kind"] for r in rows])
    spinner = np.array([r["spinner"] for r in rows])
    source = np.array([r["source"] for r in rows])
    share = np.array([r["spun_share"] for r in rows])
    sent = level == "sentence"
    clean_sent = sent & (y == 0)
    table = {}

    def add(name, mask_pos, mask_neg=None):
        mask = mask_pos | (mask_neg if mask_neg is not None else np.zeros_like(mask_pos))
        if mask.any():
            table[name] = slice_metrics(y[mask], scores[mask], t)

    add("sentence: all", sent)
    add("sentence: spun >=20% words", sent & (y == 1) & (share >= 0.2), clean_sent)
    for b in SPUN_SHARE_BUCKETS:
        add(f"sentence: spun {b} words", sent & (y == 1) & np.array([spun_share_bucket(x) == b for x in share]),
            clean_sent)
    for name in sorted(set(spinner[sent & (y == 1)])):
        add(f"sentence: spinner={name}", sent & (y == 1) & (spinner == name), clean_sent)
    for lv in ("paragraph", "article"):
        at = level == lv
        add(f"{lv}: all", at)
        for k in ("spun", "partial"):
            for name in sorted(set(spinner[at & (kind == k)])):
                add(f"{lv}: {k} {name}", at & (kind == k) & (spinner == name), at & (y == 0))
    add("not spinning: MRPC paraphrases", sent & (source == "mrpc"))
    add("not spinning: PAWS", sent & (source == "paws"))
    add("not spinning: verbatim copies", sent & (kind == "verbatim"))
    add("not spinning: clean paragraphs", (level == "paragraph") & (y == 0))
    add("not spinning: clean articles", (level == "article") & (y == 0))
    add("not spinning: clean sentences", sent & (kind == "original"))

    metrics = {}
    if det.tagger is not None:
        short = [i for i in range(len(rows)) if level[i] != "article"]
        wm = word_metrics(det, [rows[i] for i in short], [analyses[i] for i in short])
        metrics.update({f"{prefix}_{k}": v for k, v in wm.items()})
    keys = {"sentence: all": "sentence", "sentence: spun >=20% words": "sentence_spun20", "article: all": "article",
            "paragraph: all": "paragraph", "not spinning: MRPC paraphrases": "mrpc",
            "not spinning: clean articles": "clean_article", "not spinning: clean paragraphs": "clean_paragraph",
            "not spinning: PAWS": "paws"}
    for name, m in table.items():
        short_name = keys.get(name)
        if short_name:
            for k in ("precision", "recall", "f1", "roc_auc", "pr_auc", "fpr"):
                if not np.isnan(m[k]):
                    metrics[f"{prefix}_{short_name}_{k}"] = float(m[k])
    return {"metrics": metrics, "table": table, "scores": scores, "rows": rows}


def heldout_rows(rows: list[dict], family: str, level: str, limit: int | None, seed: int) -> list[dict]:
    """`family`'s fully spun texts of one level and as many clean originals of that level (a fixed sample)."""
    rng = np.random.default_rng(seed)
    pos = [r for r in rows if r["level"] == level and r["kind"] == "spun" and r["spinner"] == family]
    neg = [r for r in rows if r["level"] == level and r["kind"] == "original"]
    pick = lambda xs: [xs[i] for i in sorted(rng.choice(len(xs), min(len(xs), limit or len(xs)), replace=False))]
    return pick(pos) + pick(neg)


def family_figures(det: Detector, sample: list[dict], analyses, scores, records) -> dict:
    """ROC-AUC, recall and false-positive rate at the shipped threshold, spun-word precision, recall and F1, and
    how often a flagged swap's suggestion is its original wording, on one family's spun texts and clean texts."""
    m = slice_metrics([r["label"] for r in sample], scores, det.threshold)
    out = {k: m[k] for k in ("roc_auc", "recall", "fpr")}
    out["positives"] = m["positives"]
    if det.tagger is not None:
        out.update(word_metrics(det, sample, analyses))
        out["suggestion_accuracy"], out["flagged_true_spans"] = suggestion_accuracy(sample, records)
    reads = [a.read for a, r in zip(analyses, sample) if r["label"] and a.read is not None]
    if reads:
        out["spun_read"] = float(np.mean(reads))
    return out


def per_family(samples: dict, families: list[str], figures_of) -> dict[str, dict]:
    """{family: figures}: `figures_of(sample)` on the family's spun paragraphs and articles against clean ones,
    each level's keys prefixed "paragraph." or "article.", and on both levels pooled (unprefixed)."""
    out = {}
    for family in families:
        figures, pooled = {}, []
        for level in ("paragraph", "article"):
            sample = samples[(family, level)]
            if any(r["label"] for r in sample):
                pooled += sample
                figures.update({f"{level}.{k}": v for k, v in figures_of(sample).items()})
        if pooled:
            out[family] = {**figures, **figures_of(pooled)}
    return out


def roc(labels, raw) -> float:
    return slice_metrics(labels, raw, 0.0)["roc_auc"]


def evaluate_families(det: Detector, rows: list[dict], families: list[str], limit: int | None, seed: int,
                      tagger_weights: list[float] = (), analyse=None) -> dict[str, dict]:
    """{variant: {family: figures}} for each family's spun paragraphs and articles against clean ones, per level
    (keys prefixed "paragraph." and "article.") and pooled. Variants: "full", the detector in its current mode;
    "tagger_only", fast mode (when the current one reads); "zero_shot", the language model's zero-shot score
    alone, and "tagger_weight_W", thorough raw scores with each of `tagger_weights` (ROC-AUC only: they have no
    threshold). Every text is analysed once (by `analyse`, `det.analyse` by default), whatever families share it."""
    samples = {(f, lv): heldout_rows(rows, f, lv, limit, seed) for f in families for lv in ("paragraph", "article")}
    unique = {r["id"]: r for sample in samples.values() for r in sample}
    ids = list(unique)
    analyses = (analyse or det.analyse)([unique[i]["text"] for i in ids])
    if "thorough" in det.modes_ and det.reader is not None:  # read once, here, for every variant below
        read_all(det, analyses, "language model: per-family texts")
    variants = {"full": det.mode, **({"tagger_only": "fast"} if det.mode != "fast" else {})}
    out: dict[str, dict] = {}
    for variant, mode in variants.items():
        with det.using(mode=mode):
            scores = det.text_scores(analyses)
            by_id = {i: (a, v, det.record(i, a, v)) for i, a, v in zip(ids, analyses, scores)}
            out[variant] = per_family(samples, families, lambda sample, by_id=by_id: family_figures(
                det, sample, *zip(*[by_id[r["id"]] for r in sample])))
    if "thorough" in det.modes_:
        X = dict(zip(ids, det.features(analyses, reads=True)[0]))
        raws = {"zero_shot": lambda x: x[0], **{f"tagger_weight_{w:g}": (lambda x, w=w: x[0] + w * x[1])
                                                for w in tagger_weights}}
        for variant, raw in raws.items():
            out[variant] = per_family(samples, families, lambda sample, raw=raw: {
                "roc_auc": roc([r["label"] for r in sample], [raw(X[r["id"]]) for r in sample])})
    return out


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
    ax.set(xlabel="score", ylabel="observed share spun", title="Score against share spun (test)")
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
