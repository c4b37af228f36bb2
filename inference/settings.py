"""Settings of the batch command, the HTTP service, the queue worker and the Spark command.

- The inference section, configs/inference.yaml (`load`): which model scores and how (model, threshold,
  threads, quantize...). One file, shared by all of them, so they cannot drift apart.
- What only the service and the worker add, configs/service.yaml (`load_service`): text and id limits,
  log level, `http:`, `worker:` and `scoring:` (the scoring process both use).
- What only the Spark command adds, configs/spark.yaml (`load_spark`): master, partitions, Arrow batches.

Read through `data.configfile`, so an unknown or mistyped key is an error that names it, and every value of
any file can be overridden per run (`--set quantize=true`, `--set http.port=8080`).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from data import cli
from data import configfile as cfglib
from inference.model.detector import MODES, SPANS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT = CONFIGS / "inference.yaml"
SERVICE_DEFAULT = CONFIGS / "service.yaml"
SPARK_DEFAULT = CONFIGS / "spark.yaml"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# MLflow's store when MLFLOW_TRACKING_URI is not set, for training and scoring alike (the Makefile's mlflow CLI
# targets say it again: they run no Python of ours)
MLFLOW_STORE = "sqlite:///mlflow.db"


# Fields and types only: every value is in the YAML files (data.configfile), so it is written once.

@dataclass
class InferenceConfig:
    model: str
    baseline_model: str
    threshold: float | None  # None: the model's shipped threshold
    batch_size: int  # batch command: articles scored together
    max_bytes: int  # batch command: a larger file or text gets an error record
    threads: int  # torch intra-op threads per process (UNSPIN_THREADS wins when set)
    quantize: bool | None  # int8/full-precision encoder; None: as the model was calibrated (bench/README.md)
    mode: str | None  # thorough | fast; None: the model's default
    spans: str  # flagged: spans of texts labelled spun only; all: of every text


@dataclass
class HttpConfig:
    host: str
    port: int
    workers: int
    max_body_bytes: int
    request_timeout_s: float
    max_batch_items: int
    score_batch_texts: int
    max_waiting_texts: int
    api_key_env: str | None
    api_key_file: str | None
    api_key_header: str
    allow_public_without_key: bool
    limit_concurrency: int
    max_connections: int
    keep_alive_timeout_s: float
    head_timeout_s: float
    receive_timeout_s: float
    max_head_bytes: int
    drain_timeout_s: float


@dataclass
class ScoringConfig:
    loader: str
    budget_s: float
    budget_s_per_100k_chars: float
    start_timeout_s: float
    preload: bool


@dataclass
class RetentionConfig:
    articles_keep_s: float
    verdicts_maxlen: int
    review_maxlen: int
    dead_maxlen: int
    seen_ttl_s: int


@dataclass
class WorkerConfig:
    redis_url: str
    redis_timeout_s: float
    articles_stream: str
    verdicts_stream: str
    review_stream: str
    dead_stream: str
    seen_prefix: str
    group: str
    group_start_id: str
    consumer: str | None
    batch_size: int
    block_ms: int
    claim_idle_ms: int
    claim_interval_ms: int
    max_attempts: int
    max_message_bytes: int
    prune_idle_ms: int
    log_every_s: float
    retention: RetentionConfig


@dataclass
class ServiceConfig:
    """configs/service.yaml; `inference` is filled from configs/inference.yaml, never from this file."""
    inference: InferenceConfig
    max_text_bytes: int
    max_id_chars: int
    log_level: str
    http: HttpConfig
    worker: WorkerConfig
    scoring: ScoringConfig


@dataclass
class SparkConfig:
    """configs/spark.yaml; `inference` is filled from configs/inference.yaml, never from this file."""
    inference: InferenceConfig
    master: str
    app_name: str
    partitions: int | None  # None: 4 per core of the session's default parallelism
    arrow_batch_rows: int  # rows per Arrow batch handed to Python (spark.sql.execution.arrow.maxRecordsPerBatch)


INFERENCE_KEYS = {f.name for f in fields(InferenceConfig)}


def _raw(path: str | Path | None, default: Path, overrides: list[str] | None) -> tuple[dict, Path]:
    """The file's mapping with `overrides` applied, and the file."""
    path = Path(path) if path else default
    return cfglib.apply_overrides(cfglib.read_yaml(path), overrides or []), path


def _build(cls, raw: dict, path: Path):
    try:
        return cfglib.build(cls, raw, path.name)
    except cfglib.ConfigError as e:
        raise cfglib.ConfigError(f"{e} [in {path}]") from None


def _at_least_1(where: str, values: dict) -> None:
    for key, value in values.items():
        if value < 1:
            raise cfglib.ConfigError(f"{where}.{key}: must be at least 1, got {value}")


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> InferenceConfig:
    """The inference section: configs/inference.yaml (or `path`) with `overrides` ("quantize=true")."""
    raw, path = _raw(path, DEFAULT, overrides)
    cfg = _build(InferenceConfig, raw, path)
    if cfg.threshold is not None and not 0 <= cfg.threshold <= 1:
        raise cfglib.ConfigError(f"{path.name}.threshold: must be between 0 and 1, got {cfg.threshold}")
    _at_least_1(path.name, {"batch_size": cfg.batch_size, "max_bytes": cfg.max_bytes, "threads": cfg.threads})
    for key, allowed in (("mode", (None, *MODES)), ("spans", SPANS)):
        if getattr(cfg, key) not in allowed:
            raise cfglib.ConfigError(f"{path.name}.{key}: expected one of {', '.join(map(str, allowed))}, "
                                     f"got {getattr(cfg, key)!r}")
    return cfg


def load_service(path: str | Path | None = None, overrides: list[str] | None = None) -> ServiceConfig:
    """configs/service.yaml (or `path`) and the inference section. An override goes to the file its first
    key belongs to: "model=..." (or "inference.model=...") to inference.yaml, "http.port=8080" to service.yaml."""
    cfg, path = _with_inference(ServiceConfig, path, SERVICE_DEFAULT, overrides, _reject_inline_key)
    return _validate_service(cfg, path.name)


def load_spark(path: str | Path | None = None, overrides: list[str] | None = None) -> SparkConfig:
    """configs/spark.yaml (or `path`) and the inference section; overrides go where `load_service` sends them."""
    cfg, path = _with_inference(SparkConfig, path, SPARK_DEFAULT, overrides)
    _at_least_1(path.name, {"arrow_batch_rows": cfg.arrow_batch_rows,
                            **({"partitions": cfg.partitions} if cfg.partitions is not None else {})})
    return cfg


def _with_inference(cls, path, default: Path, overrides: list[str] | None, check=None):
    """(`cls` from its own file, with `inference` from configs/inference.yaml; the file read). An override goes
    to the file its first key belongs to."""
    shared, own = [], []
    for item in overrides or []:
        item = item.removeprefix("inference.")
        (shared if item.split("=", 1)[0].split(".", 1)[0] in INFERENCE_KEYS else own).append(item)
    raw, path = _raw(path, default, own)
    if check:
        check(raw, path)
    for key in raw:
        if key in INFERENCE_KEYS | {"inference"}:
            raise cfglib.ConfigError(f"{path.name}.{key}: belongs in configs/inference.yaml, the inference section "
                                     f"the commands share (or --set {key}=...) [in {path}]")
    inference = dataclasses.asdict(load(None, shared))  # already checked: built again as the field's value
    return _build(cls, {**raw, "inference": inference}, path), path


def _reject_inline_key(raw: dict, path: Path) -> None:
    if isinstance(raw.get("http"), dict) and "api_key" in raw["http"]:
        raise cfglib.ConfigError(
            f"{path.name}.http.api_key: not accepted: a key given with --set shows in `ps` to every user of this "
            f"machine, and one written in a config file ends up in copies and version control. Put it in an "
            f"environment variable named by http.api_key_env, or in a file (chmod 600) named by http.api_key_file")


def _validate_service(cfg: ServiceConfig, where: str) -> ServiceConfig:
    """Value checks the type checks of the loader cannot express."""
    def bad(key, why):
        raise cfglib.ConfigError(f"{where}.{key}: {why}")

    http, w, keep, sc = cfg.http, cfg.worker, cfg.worker.retention, cfg.scoring
    _at_least_1(where, {
        "max_text_bytes": cfg.max_text_bytes, "max_id_chars": cfg.max_id_chars, "http.workers": http.workers,
        "http.max_body_bytes": http.max_body_bytes, "http.max_batch_items": http.max_batch_items,
        "http.score_batch_texts": http.score_batch_texts, "http.max_waiting_texts": http.max_waiting_texts,
        "http.limit_concurrency": http.limit_concurrency, "http.max_connections": http.max_connections,
        "http.max_head_bytes": http.max_head_bytes,
        "worker.batch_size": w.batch_size, "worker.block_ms": w.block_ms, "worker.claim_idle_ms": w.claim_idle_ms,
        "worker.claim_interval_ms": w.claim_interval_ms, "worker.max_attempts": w.max_attempts,
        "worker.max_message_bytes": w.max_message_bytes, "worker.prune_idle_ms": w.prune_idle_ms,
        "worker.retention.verdicts_maxlen": keep.verdicts_maxlen, "worker.retention.review_maxlen": keep.review_maxlen,
        "worker.retention.dead_maxlen": keep.dead_maxlen, "worker.retention.seen_ttl_s": keep.seen_ttl_s})
    if cfg.log_level.lower() not in LOG_LEVELS:
        bad("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {cfg.log_level!r}")
    if http.max_waiting_texts < http.max_batch_items:
        bad("http.max_waiting_texts", f"must be at least http.max_batch_items ({http.max_batch_items}), "
                                      f"else a full batch could never be taken")
    if not 0 < http.port < 65536:
        bad("http.port", f"must be 1..65535, got {http.port}")
    for key, value in [("http.request_timeout_s", http.request_timeout_s),
                       ("http.drain_timeout_s", http.drain_timeout_s),
                       ("http.keep_alive_timeout_s", http.keep_alive_timeout_s),
                       ("http.head_timeout_s", http.head_timeout_s),
                       ("http.receive_timeout_s", http.receive_timeout_s),
                       ("worker.redis_timeout_s", w.redis_timeout_s), ("scoring.budget_s", sc.budget_s),
                       ("scoring.start_timeout_s", sc.start_timeout_s)]:
        if value <= 0:
            bad(key, f"must be positive, got {value}")
    for key, value in [("scoring.budget_s_per_100k_chars", sc.budget_s_per_100k_chars),
                       ("worker.retention.articles_keep_s", keep.articles_keep_s)]:
        if value < 0:
            bad(key, f"must be 0 or more, got {value}")
    if http.max_connections < http.limit_concurrency:
        bad("http.max_connections", f"must be at least http.limit_concurrency ({http.limit_concurrency}), else "
                                    f"a connection is refused before that limit could answer its request with 503")
    if http.head_timeout_s > http.receive_timeout_s:
        bad("http.head_timeout_s", f"must be at most http.receive_timeout_s ({http.receive_timeout_s:g}), which "
                                   f"bounds the whole request, headers included")
    module, _, function = sc.loader.partition(":")
    if not (module and function and all(p.isidentifier() for p in module.split(".") + [function])):
        bad("scoring.loader", f"must be module:function (e.g. inference.run_detector:load_detector), got {sc.loader!r}")
    if not http.api_key_header.strip():
        bad("http.api_key_header", "must be a header name")
    if http.api_key_env and http.api_key_file:
        bad("http.api_key_file", "set either http.api_key_env or http.api_key_file, not both")
    streams = [w.articles_stream, w.verdicts_stream, w.review_stream, w.dead_stream]
    if len(set(streams)) != len(streams):
        bad("worker", f"stream names must all differ: {streams}")
    if not w.seen_prefix or any(s.startswith(w.seen_prefix) for s in streams):
        bad("worker.seen_prefix", f"must be a non-empty prefix no stream name starts with, got {w.seen_prefix!r}")
    return cfg


def api_key(cfg: HttpConfig) -> str | None:
    """The key clients must send, or None: from the environment variable `api_key_env` or the file
    `api_key_file`, never from the config itself (see `_reject_inline_key`)."""
    if cfg.api_key_env:
        value = os.environ.get(cfg.api_key_env, "").strip()
        if not value:
            raise cfglib.ConfigError(f"service.yaml.http.api_key_env: environment variable {cfg.api_key_env} "
                                     f"is not set or empty (unset api_key_env to run without a key)")
        return value
    if cfg.api_key_file:
        try:
            value = Path(cfg.api_key_file).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise cfglib.ConfigError(f"service.yaml.http.api_key_file: cannot read {cfg.api_key_file}: {e}") from None
        if not value:
            raise cfglib.ConfigError(f"service.yaml.http.api_key_file: {cfg.api_key_file} is empty")
        return value
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name, "", "0.0.0.0"...: assume other machines can reach it
        return False


def check_http(cfg: HttpConfig) -> list[str]:
    """Refuse settings that would expose the service (ConfigError naming the key); returns warnings to log."""
    warnings = []
    key = api_key(cfg)
    if key is None and not is_loopback(cfg.host):
        if not cfg.allow_public_without_key:
            raise cfglib.ConfigError(
                f"service.yaml.http.host: {cfg.host!r} is reachable from other machines and no API key is set: "
                f"set http.api_key_env or http.api_key_file, or http.allow_public_without_key=true to serve "
                f"without a key")
        warnings.append(f"serving on {cfg.host} WITHOUT an API key (http.allow_public_without_key is true): "
                        f"anyone who can reach port {cfg.port} can use the service")
    if cfg.api_key_file and not cfg.api_key_env:
        mode = Path(cfg.api_key_file).expanduser().stat().st_mode & 0o077
        if mode:
            warnings.append(f"API key file {cfg.api_key_file} is readable by other users (chmod 600 it)")
    return warnings


def process_defaults(cfg: InferenceConfig) -> None:
    """Environment of a scoring process, set before the model loads: offline model hub, torch threads,
    MLflow store (the environment wins where it is already set)."""
    cli.offline()
    os.environ.setdefault("UNSPIN_THREADS", str(cfg.threads))
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = MLFLOW_STORE


# ---- command line -------------------------------------------------------------------------------

# Flags that are shorthand for an override (argparse dest -> config key); a command adds the ones it takes.
SHORTHANDS = {"model": "model", "master": "master", "host": "http.host", "port": "http.port",
              "redis_url": "worker.redis_url", "consumer": "worker.consumer"}


def add_common_args(parser, config_help: str) -> None:
    """--config, --set and --model, as every command reading these settings takes them."""
    cli.config_args(parser, help=config_help)
    parser.add_argument("--model", help="model URI (models:/unspin@champion, runs:/...) or directory (overrides `model`)")


def overrides(args) -> list[str]:
    """The --set values, then the shorthand flags given (--model, --port...), as KEY=VALUE overrides."""
    out = list(args.set)
    for dest, key in SHORTHANDS.items():
        if getattr(args, dest, None) is not None:
            out.append(f"{key}={json.dumps(getattr(args, dest))}")
    return out
