"""Log a detector as an MLflow pyfunc, register it, and move the champion alias only on improvement."""
from __future__ import annotations

import importlib.metadata
import modulefinder
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from inference.model.detector import Detector

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "inference" / "model"  # the package the MLflow model ships, with what it imports
SAMPLE = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress "
          "a 12 months in the past.")


def shipped_imports() -> tuple[set[Path], set[str]]:
    """What the model package imports, read from its code (imports inside functions included): the project's own
    module files it needs, and the top-level names of the third-party packages."""
    finder = modulefinder.ModuleFinder(path=[str(ROOT)])  # only the project is searched: the rest is "missing"
    for script in sorted(MODEL.glob("*.py")):
        finder.run_script(str(script))
    found = {Path(m.__file__) for m in finder.modules.values() if m.__file__}  # each script is found as __main__
    own = set(MODEL.glob("*.py")) | {p for p in found if p.is_relative_to(ROOT)}
    packages = {p.relative_to(ROOT).parts[0] for p in own}
    third = {name.split(".")[0] for name in finder.badmodules} - set(sys.stdlib_module_names) - packages
    return own, third


def requirements(imported: set[str]) -> list[str]:
    """Pins (from pyproject.toml, the one place for pins) of the distributions the model imports, plus those
    it loads without importing them by name ([tool.unspin] model_loads)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {re.split(r"[=<>~!\[; ]", dep)[0].lower(): dep for dep in project["project"]["dependencies"]}
    dists = importlib.metadata.packages_distributions()
    needed = set(project["tool"]["unspin"]["model_loads"])
    for module in sorted(imported):
        pinned = [d.lower() for d in dists.get(module, [module]) if d.lower() in pins]
        if not pinned:
            raise RuntimeError(f"the model imports {module!r}, whose distribution is not pinned in pyproject.toml")
        needed.update(pinned)
    return sorted(pins[name] for name in needed)


def code_paths(stage: Path, own: set[Path]) -> list[str]:
    """Stage the model package with every project module it imports (and the package __init__ files on their
    way), laid out as in the repo; MLflow puts the staged folders on sys.path when it loads the model."""
    for path in own:
        (stage / path.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, stage / path.relative_to(ROOT))
    return sorted(str(p) for p in stage.iterdir())


def next_version(client: MlflowClient, name: str) -> str:
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except mlflow.exceptions.MlflowException:
        versions = []
    return str(max([int(v.version) for v in versions], default=0) + 1)


def log_detector(det: Detector, name: str) -> tuple[str, object]:
    """Log `det` in the active run as artifact `model`, registered as `name`; returns (version, model_info)."""
    import pandas as pd
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    client = MlflowClient()
    version = next_version(client, name)
    det.describe(name=name, version=version)
    example = pd.DataFrame({"id": ["example-1"], "text": [SAMPLE]})
    out = det.score(example["text"].tolist(), ids=example["id"].tolist())
    inputs = Schema([ColSpec("string", "id", required=False), ColSpec("string", "text")])
    signature = ModelSignature(inputs=inputs, outputs=infer_signature(example, out).outputs)
    own, third = shipped_imports()
    with tempfile.TemporaryDirectory() as tmp:
        det_dir = det.save(Path(tmp) / "detector")
        info = mlflow.pyfunc.log_model(  # models from code: the pyfunc is its source file, not a pickle
            name="model", python_model=str(MODEL / "pyfunc.py"), artifacts={"detector": str(det_dir)},
            code_paths=code_paths(Path(tmp) / "code", own), signature=signature, input_example=example,
            pip_requirements=requirements(third), registered_model_name=name)
    registered = str(info.registered_model_version)
    if registered != version:  # someone registered concurrently: record the real number
        det.describe(version=registered)
    return registered, info


def dataset_of(client: MlflowClient, run) -> str | None:
    """The dataset hash a run was trained and validated on (logged on it or on its parent run)."""
    if "dataset_hash" in run.data.params:
        return run.data.params["dataset_hash"]
    parent = run.data.tags.get("mlflow.parentRunId")
    return client.get_run(parent).data.params.get("dataset_hash") if parent else None


def promote_if_better(name: str, version: str, alias: str, metric: str, tie_breaker: str,
                      rescore: Callable[[str], dict] | None = None) -> tuple[bool, str]:
    """Point `alias` at `version` when its run beats the current alias holder's run on `metric`.
    Figures on different validation data do not compare: when the holder was validated on another
    dataset, `rescore(its model URI)` gives its figures on this version's validation data."""
    client = MlflowClient()
    new = client.get_run(client.get_model_version(name, version).run_id)
    try:
        current = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        current = None
    new_key = (new.data.metrics.get(metric, float("-inf")), new.data.metrics.get(tie_breaker, float("-inf")))
    how = ""
    if current is not None:
        run = client.get_run(current.run_id)
        old = run.data.metrics
        if rescore is not None and dataset_of(client, run) != dataset_of(client, new):
            old = rescore(f"models:/{name}/{current.version}")
            how = f", re-scored on this run's validation data (it was validated on dataset {dataset_of(client, run)})"
        old_key = (old.get(metric, float("-inf")), old.get(tie_breaker, float("-inf")))
        if not new_key > old_key:
            return False, (f"{name} v{version} ({metric}={new_key[0]:.4f}, {tie_breaker}={new_key[1]:.4f}) does not "
                           f"beat @{alias} v{current.version} ({old_key[0]:.4f}, {old_key[1]:.4f}{how}): alias unchanged")
    client.set_registered_model_alias(name, alias, version)
    was = f"v{current.version}{how}" if current else "none"
    return True, f"{name} v{version} ({metric}={new_key[0]:.4f}) is now @{alias} (was {was})"
