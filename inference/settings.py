"""Inference settings (configs/inference.yaml), shared by the batch command, service and worker."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data import config as cfglib

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "inference.yaml"


@dataclass
class InferenceConfig:
    model: str = "models:/unspin@champion"
    baseline_model: str = "models:/unspin-baseline@champion"
    batch_size: int = 32
    max_bytes: int = 1_000_000
    threads: int = 2
    quantize: bool = False  # dynamic int8 encoder weights: faster on CPU (figures in README, `make bench`)


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> InferenceConfig:
    path = Path(path) if path else DEFAULT
    return cfglib.load(path, InferenceConfig, overrides) if path.exists() else InferenceConfig()
