"""The settings of reference mode: configs/match.yaml read into typed sections (data.configfile). The index,
the matcher and the command all read them from here, so none of them imports another for its settings.

Fields and types only: every value is in configs/match.yaml, so it is written once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data import configfile as cfglib
from inference.matching.align import AlignConfig
from inference.matching.features import FeaturesConfig
from inference.matching.relation import RelationConfig

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "match.yaml"


@dataclass
class IndexConfig:
    segment_docs: int  # references per segment file
    max_segments: int  # more segments than this are merged into one on open
    chunk_docs: int  # references featurised per worker task
    workers: int  # processes featurising references (0: one per CPU)
    common_share: float  # immutables in more than this share of references are not gathered at search ...
    min_common_df: int  # ... unless in at most this many (small indexes gather everything)


@dataclass
class RetrievalConfig:
    candidates: int  # references verified (aligned) per input
    pool: int  # best by immutables re-ranked by word-set similarity
    rerank_weight: float
    min_immutables: float  # candidates below this immutables similarity are not verified
    passage_candidates: int  # more references verified, found by passages of the input (partial copies)
    passage_words: int  # words per passage (consecutive prose sentences)
    passage_pool: int  # best per passage by immutables containment, re-ranked by word containment
    min_passage_immutables: int  # a passage with fewer immutables is not searched on its own
    reference_cache: int  # analysed references kept in memory (popular originals are matched often)


@dataclass
class OutputConfig:
    top_k: int  # candidates reported per input (no_match candidates are not reported)
    alignment: bool  # report the sentence alignment and substitutions


@dataclass
class MatchConfig:
    index_dir: str
    max_bytes: int
    workers: int  # processes matching inputs (forked, sharing the loaded index)
    features: FeaturesConfig
    index: IndexConfig
    retrieval: RetrievalConfig
    align: AlignConfig
    relation: RelationConfig
    output: OutputConfig


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> MatchConfig:
    path = Path(path) if path else DEFAULT
    cfg = cfglib.load(path, MatchConfig, overrides)
    if cfg.features.vocabulary not in ("moby", "none"):
        raise cfglib.ConfigError(f"features.vocabulary: expected moby or none, got {cfg.features.vocabulary!r} [in {path}]")
    if cfg.retrieval.candidates < 1 or cfg.output.top_k < 1:
        raise cfglib.ConfigError(f"retrieval.candidates and output.top_k must be >= 1 [in {path}]")
    return cfg
