"""Settings of the HTTP service and the queue worker (configs/service.yaml).

Read through `data.config.load`, so an unknown or mistyped key is an error that names it, and every
value can be overridden per run ("http.port=8080").
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from data import config as cfglib

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "service.yaml"


@dataclass
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 2_000_000
    request_timeout_s: float = 30.0
    max_batch_items: int = 64
    score_batch_texts: int = 16
    max_id_chars: int = 512
    api_key: str | None = None
    api_key_env: str | None = None
    api_key_header: str = "X-API-Key"
    drain_timeout_s: float = 30.0
    log_level: str = "info"


@dataclass
class WorkerConfig:
    redis_url: str = "redis://127.0.0.1:6379/0"
    articles_stream: str = "unspin:articles"
    verdicts_stream: str = "unspin:verdicts"
    review_stream: str = "unspin:review"
    dead_stream: str = "unspin:dead"
    seen_key: str = "unspin:verdicts:ids"
    group: str = "unspin-scorers"
    group_start_id: str = "0"
    consumer: str | None = None
    batch_size: int = 16
    block_ms: int = 2000
    claim_idle_ms: int = 60_000
    claim_interval_ms: int = 5000
    max_attempts: int = 3
    prune_idle_ms: int = 86_400_000
    log_every_s: float = 30.0


@dataclass
class ServiceConfig:
    model: str = "models:/unspin@champion"
    threshold: float | None = None
    max_text_bytes: int = 200_000
    threads: int = 2
    quantize: bool = False
    http: HttpConfig = field(default_factory=HttpConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)


def validate(cfg: ServiceConfig) -> ServiceConfig:
    """Value checks the type checks of the loader cannot express."""
    def bad(key, why):
        raise cfglib.ConfigError(f"service.yaml.{key}: {why}")

    if cfg.threshold is not None and not 0 <= cfg.threshold <= 1:
        bad("threshold", f"must be between 0 and 1, got {cfg.threshold}")
    for key, value in [("max_text_bytes", cfg.max_text_bytes), ("threads", cfg.threads),
                       ("http.workers", cfg.http.workers), ("http.max_body_bytes", cfg.http.max_body_bytes),
                       ("http.max_batch_items", cfg.http.max_batch_items),
                       ("http.score_batch_texts", cfg.http.score_batch_texts), ("http.max_id_chars", cfg.http.max_id_chars),
                       ("worker.batch_size", cfg.worker.batch_size), ("worker.block_ms", cfg.worker.block_ms),
                       ("worker.claim_idle_ms", cfg.worker.claim_idle_ms),
                       ("worker.claim_interval_ms", cfg.worker.claim_interval_ms),
                       ("worker.max_attempts", cfg.worker.max_attempts),
                       ("worker.prune_idle_ms", cfg.worker.prune_idle_ms)]:
        if value < 1:
            bad(key, f"must be at least 1, got {value}")
    if not 0 < cfg.http.port < 65536:
        bad("http.port", f"must be 1..65535, got {cfg.http.port}")
    for key, value in [("http.request_timeout_s", cfg.http.request_timeout_s),
                       ("http.drain_timeout_s", cfg.http.drain_timeout_s)]:
        if value <= 0:
            bad(key, f"must be positive, got {value}")
    if not cfg.http.api_key_header.strip():
        bad("http.api_key_header", "must be a header name")
    streams = [cfg.worker.articles_stream, cfg.worker.verdicts_stream, cfg.worker.review_stream,
               cfg.worker.dead_stream, cfg.worker.seen_key]
    if len(set(streams)) != len(streams):
        bad("worker", f"stream and key names must all differ: {streams}")
    return cfg


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> ServiceConfig:
    """configs/service.yaml (or `path`) with `overrides` applied; defaults when the default file is absent."""
    if path is None and not DEFAULT.exists():
        return validate(cfglib.build(ServiceConfig, cfglib.apply_overrides({}, overrides or []), "service.yaml"))
    return validate(cfglib.load(Path(path) if path else DEFAULT, ServiceConfig, overrides))


def api_key(cfg: HttpConfig) -> str | None:
    """The key clients must send, or None. `api_key_env` names a variable that must then be set."""
    if cfg.api_key_env:
        value = os.environ.get(cfg.api_key_env, "")
        if not value.strip():
            raise cfglib.ConfigError(f"service.yaml.http.api_key_env: environment variable {cfg.api_key_env} "
                                     f"is not set or empty (unset api_key_env to run without a key)")
        return value.strip()
    if cfg.api_key is not None and not cfg.api_key.strip():
        raise cfglib.ConfigError("service.yaml.http.api_key: empty key (use null for no key)")
    return cfg.api_key
