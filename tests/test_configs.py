"""Every value of a config lives in one place, its YAML file in configs/: each file loads through its loader,
sets every field, and the dataclasses hold no defaults that could disagree with it."""
from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing

import pytest
import yaml

from data import build as data_build
from data.configfile import ConfigError, read_yaml
from inference import match, report, settings
from tests.conftest import ROOT
from train import config as train_config

CONFIGS = ROOT / "configs"
# Every YAML file in configs/ and the function the commands read it with.
LOADERS = {
    "train.yaml": train_config.load,
    "smoke.yaml": train_config.load,
    "train-full.yaml": train_config.load,
    "lofo.yaml": train_config.load,
    "data.yaml": data_build.load_config,
    "inference.yaml": settings.load,
    "service.yaml": settings.load_service,
    "spark.yaml": settings.load_spark,
    "match.yaml": match.load_config,
    "report.yaml": report.load_config,
}
# Sections a loader fills from another file (checked with that file).
FROM_ELSEWHERE = {"service.yaml": {"inference"}, "spark.yaml": {"inference"}}


def nested_dataclass(tp):
    """The dataclass a field's type holds (also inside `X | None`), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
    return None


def leaves(cls, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """(dotted key, field) of every field of `cls` and of its nested config sections."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        out.append((key, f))
        inner = nested_dataclass(hints[f.name])
        if inner is not None:
            out += leaves(inner, key + ".")
    return out


def get(raw: dict, key: str):
    for part in key.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return dataclasses.MISSING
        raw = raw[part]
    return raw


def test_every_config_file_has_a_loader():
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(LOADERS)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_config_loads_sets_every_field_and_no_field_has_a_default(name):
    cfg = LOADERS[name](CONFIGS / name)
    raw = read_yaml(CONFIGS / name)  # with its `extends:` base
    skip = FROM_ELSEWHERE.get(name, set())
    keys = [(k, f) for k, f in leaves(type(cfg)) if k.split(".")[0] not in skip]
    defaults = [k for k, f in keys if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert not defaults, f"{name}: values written in the dataclass too (write them only in the YAML): {defaults}"
    unset = [k for k, _ in keys if get(raw, k) is dataclasses.MISSING]
    assert not unset, f"{name}: fields the file does not set: {unset}"


def write_without(tmp_path, name: str, key: str) -> object:
    raw = copy.deepcopy(read_yaml(CONFIGS / name))
    *parents, leaf = key.split(".")
    node = raw
    for p in parents:
        node = node[p]
    del node[leaf]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_missing_key_fails_and_the_error_names_it(name, tmp_path):
    skip = FROM_ELSEWHERE.get(name, set())
    cls = type(LOADERS[name](CONFIGS / name))
    keys = [k for k, _ in leaves(cls) if k.split(".")[0] not in skip]
    assert keys
    for key in keys:  # each one on its own: no key may be left out
        path = write_without(tmp_path, name, key)
        with pytest.raises(ConfigError, match=rf"(^|\.){re.escape(key)}: missing key"):
            LOADERS[name](path)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_an_unknown_key_fails_and_the_error_names_it(name, tmp_path):
    raw = read_yaml(CONFIGS / name)
    cfg = LOADERS[name](CONFIGS / name)
    sections = [k for k, v in raw.items() if isinstance(v, dict) and dataclasses.is_dataclass(getattr(cfg, k))]
    for section in [None, *sections[:1]]:  # at the top and in a section
        changed = copy.deepcopy(raw)
        (changed[section] if section else changed)["no_such_key"] = 1
        path = tmp_path / name
        path.write_text(yaml.safe_dump(changed))
        key = f"{section}.no_such_key" if section else "no_such_key"
        with pytest.raises(ConfigError, match=rf"(^|\.){re.escape(key)}: unknown key"):
            LOADERS[name](path)


def test_python_callers_get_the_yaml_values(tmp_path, monkeypatch):
    """What the commands read is what Python gets when it leaves a setting out."""
    from inference import score
    from inference.matching.index import ReferenceIndex

    index = ReferenceIndex(tmp_path / "idx")  # opening for reading creates nothing
    assert index.cfg == match.load_config().index and index.featurizer.cfg == match.load_config().features
    index.close()

    got = []

    def load_detector(cfg):
        got.append(cfg)
        raise RuntimeError("no model needed")

    monkeypatch.setattr(score, "load_detector", load_detector)
    with pytest.raises(RuntimeError, match="no model needed"):
        score.run([str(tmp_path / "in.jsonl")], str(tmp_path / "out.jsonl"), "models:/other@champion")
    assert got == [dataclasses.replace(settings.load(), model="models:/other@champion")]
    with pytest.raises(RuntimeError, match="no model needed"):
        score.run([str(tmp_path / "in.jsonl")], str(tmp_path / "out.jsonl"), quantize=None, threshold=0.5)
    assert got[1] == dataclasses.replace(settings.load(), quantize=None, threshold=0.5)
