"""The score record, defined once: what every scoring path returns per text (README "Read a record").

`ScoreRecord` (with `ModelInfo`, `SentenceScore`, `Span`) is the definition. The others derive from it: the
service's response models and /openapi.json are these classes; `error_record` is the record of a text that
cannot be scored, for the batch command, the service, the worker and Spark alike; `spark_ddl` gives Spark's
schema; `to_json` is how a record is written as JSON (batch JSONL, worker verdicts).

Records travel as plain dicts: `Detector.record` builds them without pydantic, since validating every record
would cost time on the scoring path; tests/test_record.py checks that its keys are these fields.
"""
from __future__ import annotations

import json
import types
import typing
from typing import Literal

from pydantic import BaseModel, Field

# Docstrings of these classes become schema descriptions in /openapi.json: only ScoreRecord has one.


class ModelInfo(BaseModel):
    name: str
    version: str | None = Field(description="registry version, null for an unregistered model")


class SentenceScore(BaseModel):
    start: int = Field(description="character offset into the submitted text")
    end: int
    score: float = Field(description="the sentence's score, as the text's score would be for it alone")


class Span(BaseModel):
    start: int = Field(description="character offset into the submitted text: text[start:end]")
    end: int
    text: str
    score: float
    suggestion: str | None = Field(description="likely original wording, or null")


class ScoreRecord(BaseModel):
    """One record per submitted text. With `error` set, `score` and `label` are null."""
    id: str
    score: float | None = Field(description="how far the text stands out from clean text of its length band: "
                                            "r / (r + p), p the share of the band's clean validation texts "
                                            "scoring as high (in the domain where it is largest), r the rate it "
                                            "was calibrated at (calibration.max_clean_fp_rate); "
                                            "0.5 is the decision point, a typical clean text scores about 0.01")
    label: Literal["spun", "clean"] | None = Field(description="spun when score >= threshold")
    threshold: float
    model: ModelInfo
    mode: Literal["thorough", "fast"] | None = Field(description="thorough: the language model read the text; "
                                                                 "fast: the tagger alone")
    read: float | None = Field(description="share of the text's prose words the language model read (null: "
                                           "fast mode, or not scored)")
    sentences: list[SentenceScore]
    spans: list[Span] = Field(description="words the model is sure were swapped; empty for a text labelled "
                                          "clean unless all spans were asked for")
    error: str | None = Field(description="why the text got no score (empty, too long, binary...), or null")


FIELDS = tuple(ScoreRecord.model_fields)  # the record's keys, in order


def error_record(id, message: str, threshold: float | None, model: dict | None, mode: str | None = None) -> dict:
    """The record of an input that could not be scored: present, keyed, and saying why."""
    return {"id": id, "score": None, "label": None, "threshold": threshold, "model": model, "mode": mode,
            "read": None, "sentences": [], "spans": [], "error": message}


def plain(value):
    """json.dumps' `default`: numpy scalars and arrays (from the model) as plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_json(record: dict) -> str:
    # allow_nan=False: NaN is not JSON; failing here is better than output other tools cannot read.
    return json.dumps(record, ensure_ascii=False, allow_nan=False, default=plain)


def top_spans(spans: list[dict], k: int) -> str:
    """The k highest-scored spans, "spun -> suggestion" where there is one (CSV output, report overview)."""
    top = sorted(spans, key=lambda s: -(s.get("score") or 0))[:k]
    return " | ".join(f"{s.get('text', '')} -> {s['suggestion']}" if s.get("suggestion") else str(s.get("text", ""))
                      for s in top)


# ---- as Spark types ------------------------------------------------------------------------------

_SPARK = {str: "string", float: "double", int: "int", bool: "boolean"}


def _spark_type(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # X | None: Spark columns are nullable anyway
        (inner,) = [a for a in args if a is not type(None)]
        return _spark_type(inner)
    if origin is Literal:
        return _SPARK[type(args[0])]
    if origin is list:
        return f"array<{_spark_type(args[0])}>"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "struct<" + ", ".join(f"{k}: {_spark_type(f.annotation)}"
                                     for k, f in annotation.model_fields.items()) + ">"
    return _SPARK[annotation]


def spark_ddl(model: type[BaseModel] = ScoreRecord) -> str:
    """The record's schema as a Spark DDL string ("id string, score double, ...")."""
    return ", ".join(f"{k} {_spark_type(f.annotation)}" for k, f in model.model_fields.items())
