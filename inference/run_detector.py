"""Running the configured detector on validated records: the one place where an input's validation error or
a failure inside the model becomes an error record (inference/model/record.py), for every entry point.

`load_detector(cfg)`: the model of the inference section, as configured (also `scoring.loader`'s default).
`score_batch(det, records)`: the batch command and Spark. `score_items(det, (id, text) pairs)`: the service and
the worker, through their scorer (inference/scorer_process.py).
"""
from __future__ import annotations

from inference.io.inputs import Record, text_error
from inference.settings import InferenceConfig


def score_batch(det, batch: list[Record]) -> list[dict]:
    """Records for a batch, in order; a failure inside the model costs only the records it hits."""
    good = [r for r in batch if r.error is None]
    try:
        scored = iter(det.score([r.text for r in good], ids=[r.id for r in good]))
    except Exception:  # noqa: BLE001 - retry one by one so a single bad text cannot sink its batch
        scored = iter([score_one(det, r) for r in good])
    return [det.error_record(r.id, r.error) if r.error is not None else next(scored) for r in batch]


def score_one(det, r: Record) -> dict:
    try:
        return det.score([r.text], ids=[r.id])[0]
    except Exception as e:  # noqa: BLE001
        return det.error_record(r.id, f"scoring failed: {type(e).__name__}: {e}")


def score_items(det, items: list[tuple[str, object]], max_text_bytes: int) -> list[dict]:
    """Score records for (id, text) pairs, in order; an odd text gets a record with `error` set
    (the service's and the worker's entry point)."""
    batch = []
    for rid, text in items:
        error = text_error(text, max_text_bytes)
        batch.append(Record(id=rid, text=None if error else text, error=error))
    return score_batch(det, batch)


def load_detector(cfg: InferenceConfig):
    """The model of the inference section, in its mode, quantized and with its threshold override as configured."""
    from inference.model.detector import Detector

    det = Detector.load(cfg.model, quantize=cfg.quantize, mode=cfg.mode, spans=cfg.spans)
    if cfg.threshold is not None:
        det.threshold = float(cfg.threshold)
    return det
