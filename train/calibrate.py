"""Fit the detector's calibrators and shipped threshold on the validation split."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.linear_model import LogisticRegression

from data.text import words
from inference.model.detector import (
    LENGTH_BANDS,
    Analysis,
    Detector,
    length_band,
    sentence_features,
    text_features,
)
from inference.model.fitted import BandMap, LogisticCalibrator, Mode, Reading, StageOne
from train.config import CalibrationSection, ReadingSection
from train.metrics import slice_metrics, word_figures, word_scores

WORD_THRESHOLDS = np.round(np.arange(0.2, 0.81, 0.05), 2)  # stage one's word threshold: the best F1 among these
SPAN_THRESHOLDS = np.round(np.arange(0.5, 0.996, 0.01), 3)  # each mode's span threshold: the lowest that holds


def fit_logistic(X, y, seed: int = 0) -> LogisticCalibrator:
    """Logistic regression on standardised `X` (the stage-one calibrators and the reading's fusion)."""
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
    best = (0.0, 0.5)  # when no threshold flags a spun word: a probability of one half
    for t in WORD_THRESHOLDS:
        best = max(best, (word_figures(probs > t, gold)["word_f1"], float(t)))
    return best[1]


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


def fit_stage_one(det: Detector, rows: list[dict], analyses: list[Analysis], word_threshold: float | None,
                  seed: int) -> StageOne:
    """Stage one: sentence calibrator on the sentences' word probabilities, then text calibrator on the sentence
    probabilities (which the detector computes with the sentence calibrator alone)."""
    X = [sentence_features(s, word_threshold) for a in analyses for s in a.sentences]
    y = [lab for r, a in zip(rows, analyses) for lab in sentence_labels(r, a)]
    sentence = fit_logistic(X, y, seed)
    det.set_stage_one(StageOne(word_threshold, sentence, None)).stage_one(analyses)
    text = fit_logistic([text_features(a, word_threshold) for a in analyses], [r["label"] for r in rows], seed)
    return StageOne(word_threshold, sentence, text)


def word_labels_of(row: dict, a: Analysis) -> list[np.ndarray]:
    """Gold labels of each analysed sentence's words."""
    gold = {s: lab for (s, _), lab in zip(words(row["text"]), row["word_labels"])}
    return [np.array([gold.get(w[0], 0) for w in s.words]) for s in a.sentences]


def fit_reading(det: Detector, rows: list[dict], analyses: list[Analysis], cfg: ReadingSection,
                seed: int) -> tuple[Reading, dict]:
    """The language model's reading: its settings, and its word-level fusion (tagger logit, log-ratio, surprisal,
    known) fitted on a sample of short validation texts: the per-word probability thorough mode highlights with."""
    from inference.model.signals import FEATURES, fusion_features

    # reads, without a fusion yet
    det.set_reading(Reading(cfg.max_alternatives, cfg.max_words, cfg.precision, cfg.next_word_weight))
    rng = np.random.default_rng(seed)
    short = [i for i, r in enumerate(rows) if r["level"] != "article" and analyses[i].sentences]
    sample = sorted(rng.choice(short, min(len(short), cfg.fit_texts), replace=False).tolist())
    det.reader.price([(analyses[i], analyses[i].sentences) for i in sample])
    X = np.vstack([fusion_features(s.probs, s.prices) for i in sample for s in analyses[i].sentences])
    y = np.concatenate([lab for i in sample for lab in word_labels_of(rows[i], analyses[i])])
    fusion = fit_logistic(X, y, seed)
    figures = {"reading_fit_words": len(y), **{f"reading_fusion_{k}": c for k, c in zip(FEATURES, fusion.coef)}}
    return Reading(cfg.max_alternatives, cfg.max_words, cfg.precision, cfg.next_word_weight, fusion), figures


def placing(slices: dict[str, np.ndarray], min_texts: int) -> dict[str, np.ndarray]:
    """The slices that place a bound: each one of at least `min_texts` texts, and the smaller ones pooled into one
    ("small") when together they are that large, so a band's rare domains are held too; all pooled when none is."""
    big = {k: m for k, m in slices.items() if m.sum() >= min_texts}
    small = [m for m in slices.values() if m.sum() < min_texts]
    pool = np.logical_or.reduce(small) if small else None
    if big and pool is not None and pool.sum() >= min_texts:
        big["small"] = pool
    if not big and slices:
        big = {"pooled": np.logical_or.reduce(list(slices.values()))}
    return big


def decision_point(raw: np.ndarray, slices: dict[str, np.ndarray], rate: float, min_texts: int) -> tuple[float, str]:
    """(the lowest raw score that flags at most `rate` of every placing slice's texts, the slice that sets it)."""
    big = placing(slices, min_texts)
    best = (-np.inf, "none")
    for key, mask in big.items():
        c = np.sort(raw[mask])[::-1]
        allowed = int(np.floor(rate * len(c)))
        if allowed < len(c):
            best = max(best, (float(c[allowed]) + 1e-6, key))
    return best if np.isfinite(best[0]) else (0.0, "none")


def clean_slope(raw: np.ndarray, slices: dict[str, np.ndarray], at: float, rate: float) -> float:
    """The length band curve's slope: score = rate / (rate + p) both at the decision point (p = `rate`) and at the
    median clean text of the band's loudest domain (p = 1/2), log-linear in the raw score in between and beyond.
    So a typical clean text scores about 2 x `rate`, whatever its length, and the curve needs no spun texts."""
    medians = [float(np.median(raw[m])) for m in slices.values() if m.any()]
    if not medians or max(medians) >= at:
        return 1.0  # no clean texts below the decision point to place the curve by
    return float(np.log(0.5 / rate) / (at - max(medians)))


def span_threshold(det: Detector, mode: Mode, rows: list[dict], analyses: list[Analysis], clean: list[Analysis],
                   cfg: CalibrationSection) -> tuple[float, dict]:
    """`mode`'s highlight threshold: the lowest word probability (of SPAN_THRESHOLDS) at which the validation
    spun words flagged are right `span_precision` of the time, raised until the `clean` texts carry at most
    `max_clean_spans` spans on average."""
    probs = np.concatenate([word_scores(r, a, lambda s: det.word_probs(s, mode)) for r, a in zip(rows, analyses)])
    gold = np.concatenate([np.asarray(r["word_labels"], dtype=bool) for r in rows])
    grid = SPAN_THRESHOLDS
    figures = {t: word_figures(probs > t, gold) for t in grid}
    ok = [t for t in grid if figures[t]["word_precision"] >= cfg.span_precision and figures[t]["word_recall"] > 0]
    chosen = float(ok[0] if ok else grid[-1])

    def clean_spans(threshold: float) -> float:
        return float(np.mean([len(det.spans(a, replace(mode, span_threshold=threshold))) for a in clean]))

    for t in grid[grid >= chosen]:
        chosen = float(t)
        if not clean or clean_spans(chosen) <= cfg.max_clean_spans:
            break
    m = figures[min(grid, key=lambda t: abs(t - chosen))]
    spans = clean_spans(chosen) if clean else float("nan")
    return chosen, {"span_threshold": chosen, "val_word_precision": m["word_precision"],
                    "val_word_recall": m["word_recall"], "val_clean_article_spans": spans}


def is_clean(r: dict) -> bool:
    return r["kind"] in ("original", "verbatim")


def per_source(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """At most `limit` rows of every (source, level) (a fixed sample, in order)."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["level"]), []).append(r)
    out = []
    for key in sorted(groups):
        g = groups[key]
        out += [g[i] for i in sorted(rng.permutation(len(g))[: limit or len(g)].tolist())]
    return out


def threshold_rows(rows: list[dict], taken: set, cfg: CalibrationSection, seed: int) -> list[dict]:
    """Clean texts (and paraphrases) of every (source, level) beyond the calibration sample, at most
    `threshold_texts` each: what each length band's decision point is held to."""
    held = [r for r in rows if r["id"] not in taken and (is_clean(r) or r["source"] in cfg.paraphrase_sources)]
    return per_source(held, cfg.threshold_texts, seed)


def read_all(det: Detector, analyses: list[Analysis], desc: str, chunk: int = 32) -> None:
    """Have the language model read `analyses` now, with a progress bar (it reads ~2 articles a second, and
    training reads thousands of texts); later `features` calls find them read. Stage one runs first: past the
    word budget, it picks the sentences read."""
    from tqdm import tqdm

    det.stage_one(analyses)
    todo = list({id(a): a for a in analyses if a.sentences and a.read is None}.values())  # each unread one once
    for i in tqdm(range(0, len(todo), chunk), desc=desc, unit="batch", mininterval=10):
        det.read(todo[i:i + chunk])


class Analyses:
    """A detector's analyses by text, for evaluation: a text that several samples hold is analysed and read once
    (`read_all` skips texts read before). Valid while the detector's fitted state stays as it is."""

    def __init__(self, det: Detector):
        self.det, self.by_text = det, {}

    def __call__(self, texts: list[str]) -> list[Analysis]:
        new = [t for t in dict.fromkeys(texts) if t not in self.by_text]
        self.by_text.update(zip(new, self.det.analyse(new)))
        return [self.by_text[t] for t in texts]


def fit_modes(det: Detector, rows: list[dict], analyses: list[Analysis], n_sample: int, cfg: CalibrationSection,
              reading: ReadingSection | None) -> tuple[dict[str, Mode], dict, dict]:
    """Each mode's length band curves and highlight threshold on `rows` (the calibration sample and the clean
    texts beyond it): per length band, 0.5 sits where the band's clean texts of the worst domain (source) are
    flagged at `max_clean_fp_rate` (paraphrases at `max_paraphrase_fp_rate`, for the kinds in
    `paraphrase_bound`). The highlight threshold is chosen on the sample's (the first `n_sample` rows') short
    spun and clean texts. Returns (modes, binding: which slice set each band's 0.5, figures)."""
    weights = {"fast": (0.0, 1.0)}
    if reading is not None and det.reader is not None:
        weights["thorough"] = (1.0, reading.tagger_weight)
    bands_of = np.array([length_band(a, cfg.length_band_words) for a in analyses])
    source = np.array([r["source"] for r in rows])
    clean = np.array([is_clean(r) for r in rows])
    paraphrase = np.array([r["source"] in cfg.paraphrase_sources and r["kind"] == "paraphrase" for r in rows])
    held = paraphrase & (det.kind in cfg.paraphrase_bound)
    short = [i for i, r in enumerate(rows[:n_sample]) if r["level"] != "article" and analyses[i].sentences]
    # highlights are held on clean articles, the texts that carry the most of them (any clean text without articles)
    articles = clean & (bands_of == "article")
    clean_texts = [analyses[i] for i in np.flatnonzero(articles if articles.any() else clean)]
    modes, binding, out = {}, {}, {}
    for name, (zw, tw) in weights.items():
        if zw:
            read_all(det, analyses, "language model: validation texts")
        X, _ = det.features(analyses, reads=zw != 0)
        raw = zw * X[:, 0] + tw * X[:, 1]
        bands = {}
        for b in LENGTH_BANDS:
            mine = bands_of == b
            slices = {f"clean.{d}": mine & clean & (source == d) for d in sorted(set(source[mine & clean]))}
            at, binding.setdefault(name, {})[b] = decision_point(raw, slices, cfg.max_clean_fp_rate,
                                                                 cfg.min_slice_texts)  # and the slice that set it
            if (mine & held).any():
                at = max(at, decision_point(raw, {"paraphrase": mine & held}, cfg.max_paraphrase_fp_rate, 1)[0])
            bands[b] = BandMap(at, clean_slope(raw, placing(slices, cfg.min_slice_texts), at, cfg.max_clean_fp_rate))
            out[f"{name}.band.{b}.at"], out[f"{name}.band.{b}.slope"] = bands[b].at, bands[b].slope
        mode = Mode(zw, tw, bands, span_threshold=SPAN_THRESHOLDS[0])  # its own is chosen next
        chosen, figures = span_threshold(det, mode, [rows[i] for i in short], [analyses[i] for i in short],
                                         clean_texts, cfg)
        modes[name] = replace(mode, span_threshold=chosen)
        out.update({f"{name}.{k}": v for k, v in figures.items()})
    return modes, binding, out


def clean_fpr(scores: np.ndarray, rows: list[dict], length_bands: list[str], threshold: float, prefix: str) -> dict:
    """Share of clean texts flagged per (domain, length band), with their counts, and the median clean score per
    length band."""
    out = {}
    clean = np.array([is_clean(r) for r in rows])
    source, band = np.array([r["source"] for r in rows]), np.array(length_bands)
    for d in sorted(set(source[clean])):
        for b in LENGTH_BANDS:
            mask = clean & (source == d) & (band == b)
            if mask.any():
                out[f"{prefix}_clean_fpr.{d}.{b}"] = float((scores[mask] >= threshold).mean())
                out[f"{prefix}_clean_n.{d}.{b}"] = int(mask.sum())
    for b in LENGTH_BANDS:
        mask = clean & (band == b)
        if mask.any():
            out[f"{prefix}_clean_median.{b}"] = float(np.median(scores[mask]))
    return out


def fit_calibration(det: Detector, rows: list[dict], cfg: CalibrationSection, seed: int,
                    reading: ReadingSection | None = None) -> dict:
    """Calibrate `det` on validation `rows` (with the language model's reading when `reading` is given and
    enabled): its stage one, reading and modes; returns validation metrics."""
    sample = per_level(rows, cfg.max_validation_texts, seed)
    bound = threshold_rows(rows, {r["id"] for r in sample}, cfg, seed)
    analyses = det.analyse([r["text"] for r in sample + bound])
    first = analyses[: len(sample)]
    short = [(r, a) for r, a in zip(sample, first) if r["level"] != "article"]
    # a scorer without word probabilities (the baseline) has no word threshold
    word_threshold = (cfg.word_threshold or best_word_threshold(*zip(*short))) if det.tagger is not None else None
    det.set_stage_one(fit_stage_one(det, sample, first, word_threshold, seed))
    extra = {}
    reads = reading is not None and reading.enabled and det.tagger is not None and det.suggester is not None
    if reads:
        fitted, extra = fit_reading(det, sample, first, reading, seed)
        det.set_reading(fitted)
    modes, binding, figures = fit_modes(det, sample + bound, analyses, len(sample), cfg, reading if reads else None)
    extra.update(figures)
    default = reading.default_mode if reading is not None else "fast"
    det.set_modes(modes, default if default in modes else "fast", cfg.length_band_words, binding)
    scores = np.array(det.text_scores(analyses))
    everything = sample + bound
    extra.update(clean_fpr(scores, everything, [det.length_band(a) for a in analyses], det.threshold, "val"))
    level = np.array([r["level"] for r in sample])
    labels = np.array([r["label"] for r in sample])
    out = {**extra, "threshold": det.threshold}
    if word_threshold is not None:
        out["word_threshold"] = word_threshold
    for lv in LEVELS:
        if (level == lv).any():
            m = slice_metrics(labels[level == lv], scores[: len(sample)][level == lv], det.threshold)
            out.update({f"val_{lv}_{k}": m[k] for k in ("roc_auc", "pr_auc", "f1", "fpr")})
    return out
