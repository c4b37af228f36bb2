"""Shared fixtures: a small corpus written by the project, in the layout of ../shared/data."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data import cli

cli.offline()

PARAGRAPHS = [
    "The foreign minister said on Monday that talks with the neighbouring country had made good progress.",
    "Officials expect the agreement to open the border to trade and to strengthen economic support for farmers.",
    "The company reported a sharp rise in quarterly profits, helped by strong sales of its new phones.",
    "Analysts had expected a smaller increase, and shares in the firm rose five percent in early trading.",
    "The team won the final after a late goal, and the manager praised the young players for their effort.",
    "Fans gathered in the city centre to celebrate, and the club said a parade would be held next week.",
    "Researchers have developed a new method of data mining that finds patterns in very large databases.",
    "They said artificial intelligence could help doctors read medical images faster and with fewer mistakes.",
    "The government announced plans to build thousands of new homes over the next ten years.",
    "Critics said the scheme was unlikely to help first-time buyers, who face high prices in most regions.",
    "The film festival opened with a drama about a family who move to a small town by the sea.",
    "The director told reporters that the story was inspired by her own childhood a year ago.",
]
CLEAN_DOMAINS = ("wikipedia", "science", "reviews", "forum", "fiction_essays", "legal")


def _articles():
    for i in range(24):
        paras = [PARAGRAPHS[(i + k) % len(PARAGRAPHS)] for k in range(3)]
        yield {"id": f"bbc-fixture-{i:03d}", "category": "news", "title": f"Story {i}", "text": "\n\n".join(paras)}


def write_corpus(root: Path) -> Path:
    """Write a tiny corpus (with some bad rows) under `root`, in the layout the data config expects."""
    for sub in ("news", "paraphrase", "lexicons", "clean"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with open(root / "news/bbc_news.jsonl", "w") as f:
        f.writelines(json.dumps(a) + "\n" for a in _articles())
        f.write(json.dumps({"id": "bbc-empty", "text": ""}) + "\n")          # empty
        f.write(json.dumps({"id": "bbc-space", "text": "   \n "}) + "\n")    # whitespace
        f.write(json.dumps({"id": "bbc-num", "text": 12345}) + "\n")         # not text
        f.write(json.dumps({"id": "bbc-long", "text": "word " * 30000}) + "\n")  # too long
        f.write("{not json\n")                                                 # malformed
    with open(root / "news/ag_news_test.jsonl", "w") as f:
        f.writelines(json.dumps({"id": f"ag-{i:05d}", "category": "world", "title": "t", "text": p}) + "\n" for i, p in enumerate(PARAGRAPHS * 2))
    with open(root / "news/msr_news_sentences.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["sentence_id", "text", "site", "date"])
        for i, p in enumerate(PARAGRAPHS):
            w.writerow([1000 + i, p, "example.com", "June 5 2003"])
    with open(root / "paraphrase/mrpc_train.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["label", "id1", "id2", "sentence1", "sentence2"])
        w.writerow([1, 1000, 1001, PARAGRAPHS[0], "On Monday the foreign minister told reporters the talks were going well."])
        w.writerow([1, 1002, 1003, PARAGRAPHS[2], "Quarterly profit at the company climbed sharply on the back of phone sales."])
        w.writerow([0, 1004, 1005, PARAGRAPHS[4], PARAGRAPHS[5]])
    with open(root / "paraphrase/mrpc_test.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["label", "id1", "id2", "sentence1", "sentence2"])
        w.writerow([1, 1006, 1007, PARAGRAPHS[6], "A new data mining technique spots patterns in huge databases, researchers say."])
    for name in ("paws_qqp_train.tsv", "paws_qqp_dev_test.tsv"):
        with open(root / "paraphrase" / name, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["id", "sentence1", "sentence2", "label"])
            w.writerow([1, "How do I learn to cook rice ?", "How do I cook to learn rice ?", 0])
            w.writerow([2, "What is the best way to save money ?", "What is the best way to save money ?", 1])
    with open(root / "lexicons/tortured_phrases.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["tortured", "expected", "num_papers", "query_context", "sources", "expected_uncertain"])
        w.writerow(["counterfeit consciousness", "artificial intelligence", 100, "", "x", 0])
        w.writerow(["information mining", "data mining", 90, "", "x", 0])
        w.writerow(["enormous information", "big data", 80, "", "x", 0])
        w.writerow(["associate in nursingd", "and", 42, "", "x", 0])
    for d, domain in enumerate(CLEAN_DOMAINS):  # four documents of two paragraphs each
        with open(root / f"clean/{domain}.jsonl", "w") as f:
            for k in range(8):
                text = " ".join(PARAGRAPHS[(d + k + j) % len(PARAGRAPHS)] for j in range(2))
                f.write(json.dumps({"id": f"{domain}-{k:05d}", "doc": f"{domain}:d{k // 2}", "text": text,
                                    "source": "fixture"}) + "\n")
            f.write("{not json\n")                                                         # malformed
            f.write(json.dumps({"id": f"{domain}-nodoc", "text": PARAGRAPHS[0]}) + "\n")  # no document
    return root


@pytest.fixture(scope="session", autouse=True)
def temporary_files(tmp_path_factory):
    """Temporary files of the tests and of every process they start (servers killed with SIGKILL leave their
    model downloads behind) go below pytest's own temporary folder, which pytest prunes."""
    import tempfile

    folder = str(tmp_path_factory.mktemp("tmp"))
    with pytest.MonkeyPatch.context() as mp:  # restores both afterwards
        mp.setenv("TMPDIR", folder)
        mp.setattr(tempfile, "tempdir", folder)
        yield folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def fixture_data_config(corpus, tmp_path_factory):
    """Overrides that point configs/data.yaml at the fixture corpus and a temporary output dir."""
    out = tmp_path_factory.mktemp("dataset")
    return [f"data_root={corpus}", f"output_dir={out}",
            "sentences.originals={bbc: 40, ag_news: 20, msr: 12}", "articles.max_articles=24"]


def smoke_config(tmp_path_factory, *overrides):
    """configs/smoke.yaml with its dataset written under the test session's temporary directory."""
    from train import config as train_config

    cfg = train_config.load(ROOT / "configs/smoke.yaml", list(overrides))
    cfg.data.overrides = cfg.data.overrides + [f"output_dir={tmp_path_factory.getbasetemp() / 'smoke-data'}"]
    return cfg


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    import mlflow

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    for name in ("unspin-smoke", "unspin-smoke-2"):
        mlflow.create_experiment(name, artifact_location=str(tmp / "artifacts" / name))
    yield uri
    mp.undo()


@pytest.fixture(scope="session")
def smoke_run(mlflow_store, tmp_path_factory):
    from train.run import train

    return train(smoke_config(tmp_path_factory), "configs/smoke.yaml")
