"""The scoring process (inference/scorer_process.py) for real: a spawned child with the smoke-trained model, a
budget per call, and the test hooks (tests/hooks.py) for a text held as long as the test likes or one
that kills the process. Nothing here depends on how fast the machine is: a held text is never released,
so it outlasts any budget; the budget of the other texts is generous."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from data.configfile import ConfigError
from inference import settings
from inference.scorer_process import InProcess, ScoringFailed, ScoringProcess
from tests.conftest import PARAGRAPHS, ROOT
from tests.hooks import DIE, hold_text, holds
from tests.servers import child_env, wait_ended

BUDGET_S = 20.0  # per call, for texts of a few hundred characters: far more than they take, even on a loaded machine
HOOKED = ["scoring.loader=tests.hooks:held_detector", f"scoring.budget_s={BUDGET_S}",
          "scoring.budget_s_per_100k_chars=0"]
TEXTS = [("a", PARAGRAPHS[0] + " " + PARAGRAPHS[1]), ("b", "Washington's best diplomat stated on Monday."),
         ("c", PARAGRAPHS[4]), ("empty", "")]


def config(*overrides):
    return settings.load_service(None, list(overrides))


@pytest.fixture(scope="module")
def detector(smoke_run):
    from inference.run_detector import load_detector

    return load_detector(config().inference)  # as the scoring process loads it


@pytest.fixture(scope="module")
def scorer(smoke_run):
    s = ScoringProcess(config(*HOOKED)).start()
    yield s
    s.close()


def test_the_scoring_process_gives_the_records_of_the_detector(scorer, detector):
    local = InProcess(detector, config().max_text_bytes)
    assert (scorer.model_info, scorer.threshold) == (local.model_info, local.threshold)
    got, want = scorer.score(TEXTS), local.score(TEXTS)
    assert [r["id"] for r in got] == [i for i, _ in TEXTS] and got[-1]["error"] == "empty text"
    for g, w in zip(got, want):
        assert g["label"] == w["label"] and g["spans"] == w["spans"]
        assert g["score"] == pytest.approx(w["score"], abs=1e-5) if w["score"] is not None else g["score"] is None


def test_only_the_text_over_budget_gets_an_error_record_and_the_process_is_replaced(scorer, tmp_path):
    release = tmp_path / "never"  # never created: the text is held until its budget runs out
    items = TEXTS[:2] + [("slow", hold_text(release))] + TEXTS[2:3]
    started = scorer.started
    records = scorer.score(items)
    assert [r["id"] for r in records] == [i for i, _ in items]
    slow = records[2]
    assert slow["score"] is None and slow["error"].startswith(f"scoring took longer than {BUDGET_S:.1f} s")
    assert all(r["error"] is None for i, r in enumerate(records) if i != 2)
    assert holds(release) == 2  # in the batch, then alone
    assert scorer.started == started + 2  # a process replaced after each overrun
    assert scorer.score(TEXTS[:1])[0]["error"] is None  # and the replacement scores


def test_a_text_that_kills_the_process_fails_alone_and_the_others_are_scored(scorer):
    items = [TEXTS[0], ("crash", f"{PARAGRAPHS[2]} {DIE}"), TEXTS[2]]
    out = scorer.score(items)
    assert isinstance(out[1], ScoringFailed) and "exit status 70" in str(out[1])
    assert out[0]["error"] is None and out[2]["error"] is None
    records = scorer.records(items)  # the service's view: one record per text
    assert records[1]["id"] == "crash" and "killed the scoring process" in records[1]["error"]
    assert records[1]["threshold"] == scorer.threshold and records[1]["model"] == scorer.model_info


def test_a_model_that_cannot_load_says_why(smoke_run, tmp_path):
    s = ScoringProcess(config(f"model={tmp_path / 'no-such-model'}"))
    with pytest.raises(ScoringFailed, match="no-such-model"):
        s.start()
    s = ScoringProcess(config("scoring.loader=tests.hooks:no_such_function"))
    with pytest.raises(ScoringFailed, match="scoring.loader tests.hooks:no_such_function"):
        s.start()
    s.close()
    with pytest.raises(ScoringFailed, match="closed"):
        s.score(TEXTS[:1])


def test_bad_scoring_settings_name_the_key():
    for override, key in [("scoring.loader=no_function", r"scoring\.loader"),
                          ("scoring.budget_s=0", r"scoring\.budget_s"),
                          ("scoring.budget_s_per_100k_chars=-1", r"scoring\.budget_s_per_100k_chars"),
                          ("scoring.start_timeout_s=-5", r"scoring\.start_timeout_s"),
                          ("scoring.budget=3", r"scoring\.budget")]:
        with pytest.raises(ConfigError, match=key):
            config(override)


def test_the_scoring_process_dies_with_its_owner(smoke_run, tmp_path):
    """A scoring process never outlives the process that started it, however that one ends (SIGKILL here)."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from inference import settings
        from inference.scorer_process import ScoringProcess
        s = ScoringProcess(settings.load_service(None, [])).start()
        print(s.proc.pid, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=child_env(), cwd=ROOT)
    try:
        child = psutil.Process(int(owner.stdout.readline()))
        assert child.is_running() and owner.pid in [p.pid for p in child.parents()]
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(30)
        wait_ended(child.pid, 60, "the scoring process of the killed owner")
    finally:
        owner.kill()
        owner.wait(30)


def test_the_model_the_scoring_process_downloaded_is_deleted_when_its_owner_exits(smoke_run):
    """The child is killed, never exits, so its owner deletes the download (~0.2 GB a start otherwise)."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from inference import settings
        from inference.scorer_process import ScoringProcess
        s = ScoringProcess(settings.load_service(None, [])).start()
        print(s.download, os.path.isfile(os.path.join(s.inference.model, "unspin.json")), flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, check=False, text=True,
                          env=child_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    download, loaded = proc.stdout.split()
    assert "unspin-" in download and loaded == "True" and not os.path.exists(download)
