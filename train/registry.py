"""Log a detector as an MLflow pyfunc, register it, and move the champion alias only on improvement."""
from __future__ import annotations

import shutil
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from inference.model.detector import Detector

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress "
          "a 12 months in the past.")


def requirements() -> list[str]:
    """The pinned dependencies of pyproject.toml: one place for every pin."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if not d.startswith(("datasketch", "fastapi", "uvicorn", "redis", "httpx"))]


def code_paths(stage: Path) -> list[str]:
    """The code the pyfunc imports: the model package (inference/model/, with the package root's __init__ that
    makes it importable) and the data/ modules it uses (not data/build/). Batch I/O, the commands, the service
    and reference matching are not shipped."""
    (stage / "data").mkdir(parents=True)
    for name in ("__init__.py", "text.py", "dictionaries.py", "lm.py", "resources.py"):
        shutil.copy(ROOT / "data" / name, stage / "data" / name)
    (stage / "inference").mkdir(parents=True)
    shutil.copy(ROOT / "inference" / "__init__.py", stage / "inference" / "__init__.py")
    shutil.copytree(ROOT / "inference" / "model", stage / "inference" / "model",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return [str(stage / "data"), str(stage / "inference")]


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

    from inference.model.pyfunc import UnspinModel

    client = MlflowClient()
    version = next_version(client, name)
    det.meta.update(name=name, version=version)
    example = pd.DataFrame({"id": ["example-1"], "text": [SAMPLE]})
    out = det.score(example["text"].tolist(), ids=example["id"].tolist())
    inputs = Schema([ColSpec("string", "id", required=False), ColSpec("string", "text")])
    signature = ModelSignature(inputs=inputs, outputs=infer_signature(example, out).outputs)
    with tempfile.TemporaryDirectory() as tmp:
        det_dir = det.save(Path(tmp) / "detector")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=UnspinModel(), artifacts={"detector": str(det_dir)},
            code_paths=code_paths(Path(tmp) / "code"), signature=signature, input_example=example,
            pip_requirements=requirements(), registered_model_name=name)
    registered = str(info.registered_model_version)
    if registered != version:  # someone registered concurrently: record the real number
        det.meta["version"] = registered
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
