"""The slow tier (`make test-slow`): the default training run as a user runs it, on the real corpora in the
data root, into a store of its own. Tens of minutes on 2 cores (the dataset is built first when missing)."""
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_default_training_run_logs_the_leave_one_family_out_figures(tmp_path):
    from mlflow import MlflowClient

    from data.spinners import FAMILIES

    store = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run([sys.executable, "-m", "train", "--config", "configs/train.yaml"], cwd=ROOT,
                          env={**os.environ, "MLFLOW_TRACKING_URI": store}, capture_output=True, check=False, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Leave-one-family-out" in proc.stdout and "Targets" in proc.stdout
    client = MlflowClient(store)
    [parent] = client.search_runs([client.get_experiment_by_name("unspin").experiment_id],
                                  "tags.mlflow.runName = 'train'")
    for family in FAMILIES:
        for key in ("paragraph.roc_auc", "article.roc_auc", "recall", "word_f1"):
            assert f"lofo.{family}.{key}" in parent.data.metrics, (family, key)
    assert client.get_model_version_by_alias("unspin", "champion").version == "1"
