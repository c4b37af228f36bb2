"""The registered model under `mlflow models serve -m models:/unspin@champion --env-manager local`: its
/invocations answers dataframe_split, dataframe_records and inputs with the Detector's score records."""
from __future__ import annotations

import sys

import httpx
import pytest

from inference.model.record import FIELDS
from tests.conftest import PARAGRAPHS
from tests.servers import Server, free_port

SPUN = ("Washington's best diplomat stated on Monday that overseas ministers had made good progress a 12 months in "
        "the past. Officials expect the agreement to open the border to commerce and to reinforce financial "
        "strengthen for farmers.")
ROWS = [("spun", SPUN), ("clean", "\n\n".join(PARAGRAPHS[:4])), ("empty", ""),
        ("zh", "外交部长周一表示，与邻国的会谈取得了良好进展。")]


@pytest.fixture(scope="module")
def served(smoke_run, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-serve") / "serve.log"
    server = Server([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/unspin@champion",
                     "--env-manager", "local", "--host", "127.0.0.1", "--port", port], log)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: httpx.get(f"{url}/ping", timeout=2).status_code == 200, 240, "mlflow models serve")
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def expected(smoke_run):
    from inference import Detector

    det = Detector.load("models:/unspin@champion")
    return det.score([t for _, t in ROWS], ids=[i for i, _ in ROWS])


def invoke(url: str, payload: dict) -> list[dict]:
    r = httpx.post(f"{url}/invocations", json=payload, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w) == set(FIELDS)
        assert (g["id"], g["label"], g["error"], g["model"]) == (w["id"], w["label"], w["error"], w["model"])
        assert g["threshold"] == pytest.approx(w["threshold"])
        if w["score"] is None:
            assert g["score"] is None
        else:
            assert g["score"] == pytest.approx(w["score"], abs=1e-5)
        assert [(s["start"], s["end"]) for s in g["sentences"]] == [(s["start"], s["end"]) for s in w["sentences"]]
        assert [(s["start"], s["end"], s["text"], s["suggestion"]) for s in g["spans"]] == \
               [(s["start"], s["end"], s["text"], s["suggestion"]) for s in w["spans"]]


def test_dataframe_split(served, expected):
    got = invoke(served, {"dataframe_split": {"columns": ["id", "text"], "data": [list(r) for r in ROWS]}})
    assert_same(got, expected)
    assert next(g for g in got if g["id"] == "empty")["error"] == "empty text"


def test_dataframe_records(served, expected):
    assert_same(invoke(served, {"dataframe_records": [{"id": i, "text": t} for i, t in ROWS]}), expected)


def test_inputs(served, expected):
    assert_same(invoke(served, {"inputs": {"id": [i for i, _ in ROWS], "text": [t for _, t in ROWS]}}), expected)


def test_id_is_optional_and_bad_payloads_are_400(served):
    got = invoke(served, {"dataframe_split": {"columns": ["text"], "data": [[SPUN], [PARAGRAPHS[0]]]}})
    assert [g["id"] for g in got] == ["0", "1"] and all(g["error"] is None for g in got)
    bad = httpx.post(f"{served}/invocations", json={"rows": [1]}, timeout=60)
    assert bad.status_code == 400 and "dataframe_split" in bad.text
