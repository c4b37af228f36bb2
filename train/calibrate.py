"""Fit the detector's calibrators and shipped threshold on the validation split."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from data.text import words
from inference.model.detector import Analysis, Detector, LogisticCalibrator, logit, sentence_features, text_features
from train.config import CalibrationSection, ContextSection
from train.metrics import slice_metrics, word_figures, word_scores


def fit_logistic(X, y, seed: int = 0) -> LogisticCalibrator:
    """Logistic regression on standardised `X` (calibrators and the context fusion)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    mean, scale = X.mean(0), X.std(0)
    scale[scale == 0] = 1.0
    if len(set(y.tolist())) < 2:  # degenerate (tiny smoke data): constant probability
        p = float(np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3))
        return LogisticCalibrator([0.0] * X.shape[1], float(np.log(p / (1 - p))), mean.tolist(), scale.tolist())
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((X - mean) / scale, y)
    return LogisticCalibrator(clf.coef_[0].tolist(), float(clf.intercept_[0]), mean.tolist(), scale.tolist())


def sentence_labels(row: dict, a: Analysis) -> list[int]:
    gold = {s: lab for (s, _), lab in zip(words(row["text"]), row["word_labels"])}
    return [int(any(gold.get(w[0], 0) for w in s.words)) for s in a.sentences]


def best_word_threshold(rows, analyses) -> float:
    probs = np.concatenate([word_scores(r, a) for r, a in zip(rows, analyses)])
    gold = np.concatenate([np.asarray(r["word_labels"], dtype=bool) for r in rows])
    best = (0.0, 0.5)
    for t in np.arange(0.2, 0.81, 0.05):
        best = max(best, (word_figures(probs > t, gold)["word_f1"], round(float(t), 2)))
    return best[1]


def shipped_threshold(clean_scores, max_fp_rate: float, floor: float = 0.5) -> float:
    """Lowest threshold (not below `floor`) that flags at most `max_fp_rate` of the clean scores."""
    c = np.sort(np.asarray(clean_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(max_fp_rate * len(c)))
    return float(max(floor, c[allowed] + 1e-6)) if len(c) > allowed else floor


LEVELS = ("sentence", "paragraph", "article")


def per_level(rows: list[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """The rows of each level, at most `limit` of each: a fixed random sample, in order, that holds a row of
    every (kind, source) group of the level while `limit` allows (small samples keep their MRPC slice)."""
    rng = np.random.default_rng(seed)
    out = []
    for level in LEVELS:
        mine = [i for i, r in enumerate(rows) if r["level"] == level]
        if limit is not None and len(mine) > limit:
            order = rng.permutation(mine).tolist()
            first: dict[tuple, int] = {}
            for i in order:
                first.setdefault((rows[i]["kind"], rows[i]["source"]), i)
            chosen = list(first.values())[:limit]
            taken = set(chosen)
            mine = sorted(chosen + [i for i in order if i not in taken][: limit - len(chosen)])
        out += [rows[i] for i in mine]
    return out


def fit_calibrators(det: Detector, rows: list[dict], analyses: list[Analysis],
                    seed: int) -> tuple[LogisticCalibrator, LogisticCalibrator]:
    """Sentence calibrator on the sentences' word probabilities, then text calibrator on the sentence scores."""
    X = [sentence_features(s, det.word_threshold) for a in analyses for s in a.sentences]
    y = [lab for r, a in zip(rows, analyses) for lab in sentence_labels(r, a)]
    sentence = fit_logistic(X, y, seed)
    det.calibrate_with(analyses, sentence, None)
    text = fit_logistic([text_features(a, det.word_threshold) for a in analyses], [r["label"] for r in rows], seed)
    return sentence, text


def word_labels_of(row: dict, a: Analysis) -> list[np.ndarray]:
    """Gold labels of each analysed sentence's words."""
    gold = {s: lab for (s, _), lab in zip(words(row["text"]), row["word_labels"])}
    return [np.array([gold.get(w[0], 0) for w in s.words]) for s in a.sentences]


def gate_low(scores: np.ndarray, levels: np.ndarray, high: float, share: float) -> float:
    """The lowest score from which the texts up to `high` are at most `share` of each level's texts: the
    language model reads again those the tagger leans to call spun, within a fixed cost."""
    low = 0.0
    for lv in set(levels.tolist()):
        mine = np.sort(scores[(levels == lv) & (scores <= high)])[::-1]
        allowed = int(np.floor(share * (levels == lv).sum()))
        if allowed < len(mine):
            low = max(low, float(mine[allowed]) + 1e-9)
    return low


def fit_context(det: Detector, rows: list[dict], analyses: list[Analysis], cfg: ContextSection, seed: int) -> dict:
    """Fit the language-model stage: the word-level fusion on a sample of short validation texts, then the
    calibrators of the texts the tagger is unsure of (stage-one score inside the gate)."""
    from inference.model.signals import fusion_features

    det.meta["context"] = {"max_alternatives": cfg.max_alternatives, "max_sentences": cfg.max_sentences,
                           "precision": cfg.precision}
    det.fusion = LogisticCalibrator([0.0] * 4, 0.0, [0.0] * 4, [1.0] * 4)  # placeholder while pricing
    rng = np.random.default_rng(seed)
    short = [i for i, r in enumerate(rows) if r["level"] != "article" and analyses[i].sentences]
    sample = sorted(rng.choice(short, min(len(short), cfg.fit_texts), replace=False).tolist())
    det.context.price([(analyses[i], analyses[i].sentences) for i in sample])
    X = np.vstack([fusion_features(s.tagger_probs, s.context) for i in sample for s in analyses[i].sentences])
    y = np.concatenate([lab for i in sample for lab in word_labels_of(rows[i], analyses[i])])
    det.fusion = fit_logistic(X, y, seed)
    stage1 = det.calibrate_with(analyses, det.sentence_calibrator, det.text_calibrator)
    low, high = cfg.gate
    if low is None:
        low = gate_low(np.array(stage1), np.array([r["level"] for r in rows]), high, cfg.read_share)
    det.gate = (low, high)
    gated = det.in_gate(analyses, stage1)
    picked = [analyses[i] for i in gated]
    det.fuse(picked)
    det.context_calibrators = fit_calibrators(det, [rows[i] for i in gated], picked, seed)
    return {"context_fit_words": len(y), "context_gated_share": len(gated) / max(1, len(rows)),
            "context_gate_low": low,
            **{f"context_fusion_{k}": c for k, c in zip(("logit", "ratio", "surprisal", "known"), det.fusion.coef)}}


def band_thresholds(scores, band, clean, paraphrase, cfg: CalibrationSection) -> tuple[float, dict[str, float]]:
    """(shipped threshold, {band: logit shift}): each band's own threshold flags at most `max_clean_fp_rate` of its
    `clean` scores and `max_paraphrase_fp_rate` of its `paraphrase` ones; the shipped one is the strictest, and
    each band's shift lifts its own threshold to it."""
    own = {b: max(shipped_threshold(scores[(band == b) & clean], cfg.max_clean_fp_rate),
                  shipped_threshold(scores[(band == b) & paraphrase], cfg.max_paraphrase_fp_rate))
           for b in LEVELS if ((band == b) & clean).any()}
    threshold = max(own.values(), default=0.5)
    return threshold, {b: float(logit(threshold) - logit(t)) for b, t in own.items()}


def fit_threshold(det: Detector, rows: list[dict], sample: list[dict], analyses: list[Analysis],
                  cfg: CalibrationSection, seed: int) -> dict:
    """Set the shipped threshold and the length bands' shifts (`band_thresholds`; paraphrases bind the kinds in
    `paraphrase_bound`): one unshifted threshold held paragraphs and articles to the sentences' bound (0% of
    them flagged, at the cost of their recall), a shifted one keeps each band to its own. The clean texts are
    the calibration sample's and more, up to `threshold_texts` a level: 1% of the sample's ~40 clean articles is
    its loudest one, and the threshold swung between runs with that one text."""
    def is_clean(r):
        return r["kind"] in ("original", "verbatim")

    def is_paraphrase(r):
        return r["source"] in cfg.paraphrase_sources and r["kind"] == "paraphrase"

    taken = {r["id"] for r in sample}
    more = [r for r in per_level([r for r in rows if is_clean(r) or is_paraphrase(r)], cfg.threshold_texts, seed)
            if r["id"] not in taken]
    bound, analyses = sample + more, analyses + det.analyse([r["text"] for r in more])
    det.band_words = tuple(cfg.band_words)
    unshifted = det.unshifted(analyses)
    band = np.array([det.band(a) for a in analyses])
    clean, paraphrase = np.array([is_clean(r) for r in bound]), np.array([is_paraphrase(r) for r in bound])
    held = paraphrase & (det.meta["kind"] in cfg.paraphrase_bound)
    det.threshold, det.band_shift = band_thresholds(np.array(unshifted), band, clean, held, cfg)
    scores = np.array(det.shifted(analyses, unshifted))
    out = {"val_paraphrase_fpr": float((scores[paraphrase] >= det.threshold).mean()) if paraphrase.any()
           else float("nan")}
    for b in LEVELS:
        mine = (band == b) & clean
        out[f"threshold_clean_{b}"] = int(mine.sum())
        if mine.any():
            out[f"val_{b}_clean_fpr"] = float((scores[mine] >= det.threshold).mean())
            out[f"band_shift_{b}"] = det.band_shift[b]
    return out


def fit_calibration(det: Detector, rows: list[dict], cfg: CalibrationSection, seed: int,
                    context: ContextSection | None = None) -> dict:
    """Calibrate `det` in place on validation `rows` (with the language-model stage when `context` is
    given and enabled); returns validation metrics."""

    everything, rows = rows, per_level(rows, cfg.max_validation_texts, seed)
    analyses = det.analyse([r["text"] for r in rows])
    short = [(r, a) for r, a in zip(rows, analyses) if r["level"] != "article"]
    if det.tagger is not None:
        det.word_threshold = cfg.word_threshold or best_word_threshold(*zip(*short))
    det.sentence_calibrator, det.text_calibrator = fit_calibrators(det, rows, analyses, seed)
    extra = {}
    if context is not None and context.enabled and det.tagger is not None and det.suggester is not None:
        extra = fit_context(det, rows, analyses, context, seed)
    extra.update(fit_threshold(det, everything, rows, analyses, cfg, seed))
    scores = np.array(det.calibrate(analyses))
    level = np.array([r["level"] for r in rows])
    labels = np.array([r["label"] for r in rows])
    out = {**extra, "threshold": det.threshold, "word_threshold": det.word_threshold}
    for lv in LEVELS:
        if (level == lv).any():
            m = slice_metrics(labels[level == lv], scores[level == lv], det.threshold)
            out.update({f"val_{lv}_{k}": m[k] for k in ("roc_auc", "pr_auc", "f1", "fpr")})
    return out
