"""The score record is defined once (inference/model/record.py): every path that builds, documents or stores a record
agrees with that definition. No trained model: a Detector without a scorer builds records from a hand-made
analysis, and texts that cannot be scored never reach the model."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inference import settings
from inference.io.inputs import Record
from inference.io.outputs import json_line
from inference.model import record
from inference.model.detector import LENGTH_BANDS, Analysis, Detector, Sentence
from inference.model.fitted import BandMap, Mode, StageOne
from inference.model.record import FIELDS, ModelInfo, ScoreRecord, SentenceScore, Span, error_record
from inference.run_detector import score_batch
from inference.scorer_process import InProcess

TEXT = "The best diplomat spoke on Monday."


def fields(model) -> list[str]:
    return list(model.model_fields)


@pytest.fixture
def det() -> Detector:
    fast = Mode(zero_shot_weight=0.0, tagger_weight=1.0, bands={b: BandMap(0.0, 1.0) for b in LENGTH_BANDS},
                span_threshold=0.5)
    return Detector("tagger", facts={"name": "unspin", "version": "7"}, threshold=0.6,
                    stage_one=StageOne(0.5, None, None), length_band_words=[50, 200], modes={"fast": fast})


def scored_record(det: Detector) -> dict:
    """What Detector.record makes of a scored text: one sentence, "best diplomat" flagged."""
    words = [(0, 3), (4, 8), (9, 17), (18, 23), (24, 26), (27, 33), (33, 34)]
    probs = np.array([0.1, 0.9, 0.8, 0.2, 0.1, 0.1, 0.1], dtype=np.float32)
    s = Sentence(0, len(TEXT), words, probs, score=0.83)
    return det.record("a1", Analysis(TEXT, [s]), np.float64(0.75))


def test_a_detector_record_has_exactly_the_defined_fields(det):
    rec = scored_record(det)
    assert tuple(rec) == FIELDS
    assert list(rec["model"]) == fields(ModelInfo)
    assert [list(s) for s in rec["sentences"]] == [fields(SentenceScore)]
    assert [list(s) for s in rec["spans"]] == [fields(Span)] and rec["spans"][0]["text"] == "best diplomat"
    assert ScoreRecord.model_validate(rec).model_dump() == rec  # types too: nothing coerced or dropped


def test_every_error_record_is_the_defined_one(det):
    expected = error_record("e", "empty text", 0.6, {"name": "unspin", "version": "7"}, "fast")
    assert tuple(expected) == FIELDS and ScoreRecord.model_validate(expected).model_dump() == expected
    assert det.score("   ", ids=["e"]) == expected                        # the Detector's own check
    assert det.error_record("e", "empty text") == expected
    batch = score_batch(det, [Record(id="e", text=""), Record(id="m", error="missing id")])  # batch command, Spark
    assert batch == [expected, {**expected, "id": "m", "error": "missing id"}]
    scorer = InProcess(det, max_text_bytes=100)                           # service and worker
    assert scorer.records([("e", "")]) == [expected]
    assert scorer.error_record("e", "empty text") == expected


def test_the_service_documents_the_defined_record():
    from inference.service import create_app

    spec = create_app(settings.load_service()).openapi()  # no model is loaded to build the schema
    schemas = spec["components"]["schemas"]
    for model in (ScoreRecord, ModelInfo, SentenceScore, Span):
        schema = schemas[model.__name__]
        assert list(schema["properties"]) == schema["required"] == fields(model)
    ok = spec["paths"]["/v1/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ScoreRecord"}


def test_spark_schema_is_the_defined_record():
    from inference import spark

    # the DDL string Spark has always been given (its JSON and Parquet columns), derived now from the definition
    assert spark.RECORD == (
        "id string, score double, label string, threshold double, model struct<name: string, version: string>, "
        "mode string, read double, sentences array<struct<start: int, end: int, score: double>>, "
        "spans array<struct<start: int, end: int, text: string, score: double, suggestion: string>>, error string")


def test_one_json_form_of_a_record(det):
    rec = scored_record(det)
    rec["score"] = np.float32(0.75)  # a numpy value left in by a model is written as a number
    line = json_line(rec)
    assert line == record.to_json(rec) + "\n" and json.loads(line)["score"] == pytest.approx(0.75)
    with pytest.raises(ValueError):  # NaN is not JSON: refused rather than written
        record.to_json({**rec, "score": math.nan})
    with pytest.raises(TypeError):
        record.to_json({**rec, "score": object()})
