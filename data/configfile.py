"""The generic config-file loader: YAML (with `extends:`) into typed dataclasses, with errors that name the bad key.

Every config in `configs/` is read through `load(path, Schema)`; `overrides` ("a.b=value") let a run
change any value without editing the file. The YAML files hold every value: the dataclasses declare
fields and types only, so a key missing from a file is an error naming it, never a silent default.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    pass


def _check(tp, value, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (arg, *_) = typing.get_args(tp) or (typing.Any,)
        return [_check(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, arg = typing.get_args(tp) or (str, typing.Any)
        return {k: _check(arg, v, f"{where}.{k}") for k, v in value.items()}
    if tp is typing.Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def build(cls, raw, where: str = "config"):
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _check(hints[name], raw[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: missing key (every value is set in the config file)")
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a mapping")
        node[leaf] = yaml.safe_load(value)
    return raw


def read_yaml(path: str | Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping. `extends: other.yaml` (beside it) starts from that file's values: a config
    is its base plus what it changes, so a value is written once."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path.name}.extends: expected a file name, got {base!r}")
    if path.resolve() in seen:
        raise ConfigError(f"{path.name}.extends: a cycle through {path}")
    return merge(read_yaml(path.parent / base, (*seen, path.resolve())), raw)


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` laid over it: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in changes.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load(path: str | Path, cls, overrides: list[str] | None = None):
    raw = apply_overrides(read_yaml(path), overrides or [])
    try:
        return build(cls, raw, where=Path(path).name)
    except ConfigError as e:
        raise ConfigError(f"{e} [in {path}]") from None


def data_root(configured: str) -> Path:
    """Where the raw corpora are: $UNSPIN_DATA_ROOT if set, else the configured path."""
    return Path(os.environ.get("UNSPIN_DATA_ROOT") or configured).expanduser()
