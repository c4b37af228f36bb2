"""The HTML views, opened in a real headless browser (Debian's chromium, driven by Selenium through chromedriver):
the batch report of `python -m inference.score --report`, the reference-mode report of `python -m inference.match
--report`, the service's page at / scoring a pasted text, and the worst-examples report `make train` logs to MLflow.

What a moderator sees is checked in the rendered page, against the records the commands wrote: as many highlighted
spans as the record has, each over its own text; a suggestion beside each span that has one; hostile text shown as
text and never run (no dialog, no element it would inject, nothing fetched). A screenshot of each view is saved
under the test session's temporary directory (screenshots/).
"""
from __future__ import annotations

import json
import shutil

import httpx
import pytest

from inference.report import Report, ReportConfig
from tests.conftest import PARAGRAPHS
from tests.servers import child_env, start_service
from tests.test_commands import SPUN, command, jsonl

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
KEY = "page-key-0123456789"
# Each would run script, load an image or navigate if it reached the page as markup; `window.pwned` says it ran.
HOSTILE = ['<script>alert("script");window.pwned=1</script>', '<img src=x onerror="alert(1);window.pwned=1">',
           '<a href="javascript:alert(2);window.pwned=1">click me</a>', '</script><script>window.pwned=1</script>',
           '<svg onload="window.pwned=1"></svg>']
HOSTILE_TEXT = f"{SPUN}\n\n" + " and ".join(HOSTILE) + "\n\nThe end of the story \U0001F600 said the prime diplomat."
# What the page test types: chromedriver types only characters of the Basic Multilingual Plane.
TYPED_TEXT = HOSTILE_TEXT.replace("\U0001F600", "\u00e9\u20ac")
# Wait limits only guard against a hang (scoring on a loaded machine can be slow); nothing is timed.
PATIENCE = 900


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are not installed: `make setup` installs them "
                    "(apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "screenshots"


def shoot(driver, directory, name: str) -> None:
    directory.mkdir(exist_ok=True)
    driver.save_screenshot(str(directory / f"{name}.png"))


def css(driver, selector: str, root=None):
    from selenium.webdriver.common.by import By

    return (root or driver).find_elements(By.CSS_SELECTOR, selector)


def shown_text(driver, card) -> str:
    """The card's text without the suggestions drawn beside spans (they interrupt the text they follow)."""
    return driver.execute_script("const c = arguments[0].cloneNode(true); "
                                 "c.querySelectorAll('.sugg').forEach((e) => e.remove()); return c.textContent", card)


def assert_nothing_ran(driver) -> None:
    """No dialog opened, no hostile script ran, no element of the hostile text exists, nothing was fetched."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - raises when there is no dialog
    assert driver.execute_script("return window.pwned === undefined")
    assert not css(driver, "img, svg, iframe, a[href^='javascript'], [onerror], [onload]")
    assert len(css(driver, "script:not([type='application/json'])")) == 1  # the page's own


def assert_score_card(driver, card, record: dict, text: str | None) -> None:
    """The article view of `record`: one highlight per span over its own text, its suggestion beside it."""
    marks = css(driver, "mark.span", card)
    assert len(marks) == len(record["spans"]), record["id"]
    for mark, span in zip(marks, sorted(record["spans"], key=lambda s: s["start"])):
        assert mark.text == span["text"] == text[span["start"]:span["end"]]
        beside = mark.find_elements("xpath", "following-sibling::span[@class='sugg']")
        if span["suggestion"]:
            assert len(beside) == 1 and beside[0].is_displayed() and beside[0].text == f"\u2192 {span['suggestion']}"
        else:
            assert not beside
    if record["error"]:
        assert f"error: {record['error']}" in card.text
    else:
        assert len(css(driver, ".row:not(.other) .bar .fill", card)) == len(record["sentences"])
    assert record["id"] in css(driver, "h2", card)[0].text


@pytest.fixture(scope="module")
def scored(smoke_run, tmp_path_factory):
    """`python -m inference.score` as a user runs it (progress bar on), with --report."""
    d = tmp_path_factory.mktemp("report")
    items = [{"id": "spun", "text": SPUN}, {"id": "clean", "text": "\n\n".join(PARAGRAPHS[:4])},
             {"id": HOSTILE[0], "text": HOSTILE_TEXT}, {"id": "empty", "text": ""},
             {"id": "more-spun", "text": SPUN.replace("Monday", "Tuesday")}]
    (d / "in.jsonl").write_text(jsonl(items))
    proc = command("inference.score", d / "in.jsonl", "--output", d / "out.jsonl", "--report", d / "report.html",
                   "--spans", "all")  # every text's spans, whatever its label: the report draws each one
    assert proc.returncode == 0, proc.stderr
    assert "article [" in proc.stderr  # the progress bar: the default path
    records = [json.loads(x) for x in (d / "out.jsonl").read_text().splitlines()]
    return d, items, records


def test_a_clean_article_shows_no_highlights_by_default(smoke_run, tmp_path, browser):
    """Spans are shown for texts labelled spun; a clean label leaves the article unmarked in the record and the
    report, unless every span is asked for."""
    article = "\n\n".join(PARAGRAPHS[:4])
    (tmp_path / "in.jsonl").write_text(jsonl([{"id": "clean", "text": article}]))
    pages = {}
    for spans in ("flagged", "all"):
        out, page = tmp_path / f"{spans}.jsonl", tmp_path / f"{spans}.html"
        # threshold 1: the label is clean whatever the smoke model thinks of the text
        proc = command("inference.score", tmp_path / "in.jsonl", "--output", out, "--report", page, "--quiet",
                       "--threshold", "1", "--spans", spans)
        assert proc.returncode == 0, proc.stderr
        [record] = [json.loads(x) for x in out.read_text().splitlines()]
        assert record["label"] == "clean"
        pages[spans] = record
        browser.get(page.as_uri())
        assert len(css(browser, "mark.span")) == len(record["spans"])
    assert pages["flagged"]["spans"] == [] and pages["flagged"]["score"] == pages["all"]["score"]


def test_score_report_highlights_every_span_and_runs_nothing(scored, browser, screenshots):
    d, items, records = scored
    assert sum(len(r["spans"]) for r in records) > 0 and any(s["suggestion"] for r in records for s in r["spans"])
    browser.get((d / "report.html").as_uri())
    assert_nothing_ran(browser)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # offline
    rows = css(browser, "table.overview tbody tr")
    assert [r.find_elements("css selector", "td")[0].text for r in rows] == [r["id"] for r in records]
    for i, (item, record) in enumerate(zip(items, records)):
        assert_score_card(browser, css(browser, f"#article-{i}")[0], record, item["text"])
    hostile = shown_text(browser, css(browser, "#article-2")[0])
    for h in HOSTILE:
        assert h in hostile  # shown, as text
    assert "error: empty text" in css(browser, "#article-3")[0].text
    head = css(browser, "#article-0 header")[0].text
    model = records[0]["model"]
    assert f"model {model['name']} v{model['version']}" in head and f"threshold {records[0]['threshold']:.3f}" in head
    shoot(browser, screenshots, "score_report")


def test_overview_sorts_filters_and_pages(scored, browser, tmp_path):
    """A report of many records (the scored ones, repeated), 2 articles a page: only a page is drawn at a time."""
    _, items, records = scored
    report = Report(tmp_path / "many.html", "score", "many", ReportConfig(page_size=2, top_spans=3))
    for k in range(4):
        for item, record in zip(items, records):
            report.add_score(item["text"], {**record, "id": f"{record['id']}#{k}"})
    browser.get(report.close("20 records").as_uri())
    assert len(css(browser, ".card")) == 2 and "page 1 of 10" in browser.page_source
    css(browser, "th button")[1].click()  # score: highest first, error records last
    shown = [float(x.text) for x in css(browser, "tbody td.number:nth-child(2)")]
    assert shown == [round(max(r["score"] for r in records if r["score"] is not None), 3)] * 2  # each is there 4 times
    from selenium.webdriver.support.ui import Select

    Select(css(browser, ".controls select")[0]).select_by_value("error")
    labels = [r.find_elements("css selector", "td")[2].text for r in css(browser, "tbody tr")]
    assert labels == ["error", "error"] and "4 of 20 articles" in browser.page_source
    css(browser, ".controls button")[1].click()  # next page
    assert "page 2 of 2" in browser.page_source and len(css(browser, ".card")) == 2
    for card in css(browser, ".card"):
        assert "error: empty text" in card.text


def test_match_report_shows_substitutions_in_both_texts(browser, screenshots, tmp_path):
    from tests.test_match import ARTICLES

    refs = [{"id": k, "title": t, "text": x} for k, (t, x) in ARTICLES.items()]
    original = ARTICLES["wire-rates"][1]
    swaps = {"raised": "elevated", "officials": "authorities", "quickly": "rapidly", "households": "families"}
    spun = original
    for a, b in swaps.items():
        spun = spun.replace(a, b)
    (tmp_path / "refs.jsonl").write_text(jsonl(refs))
    (tmp_path / "in.jsonl").write_text(jsonl([{"id": "spun-rates", "text": spun},
                                              {"id": HOSTILE[1], "text": " ".join(HOSTILE)}, {"id": "e", "text": ""}]))
    proc = command("inference.match", "--references", tmp_path / "refs.jsonl", "--input", tmp_path / "in.jsonl",
                   "--output", tmp_path / "out.jsonl", "--index", tmp_path / "idx", "--report", tmp_path / "m.html")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert rec["relation"] == "spun_copy" and rec["source"] == "wire-rates"
    subs = [s for p in rec["candidates"][0]["alignment"] for s in p["substitutions"]]
    assert {(s["spun"], s["original"]) for s in subs} == {(b, a) for a, b in swaps.items()}
    browser.get((tmp_path / "m.html").as_uri())
    assert_nothing_ran(browser)
    card = css(browser, "#article-0")[0]
    spun_marks = [m.text for m in css(browser, ".sent.input mark.sub", card)]
    original_marks = [m.text for m in css(browser, ".sent.reference mark.sub", card)]
    assert sorted(spun_marks) == sorted(s["spun"] for s in subs)
    assert sorted(original_marks) == sorted(s["original"] for s in subs)
    assert "spun_copy" in card.text and "source: wire-rates" in card.text and "word_match: " in card.text
    assert len(css(browser, ".pair:not(.head)", card)) == len(rec["candidates"][0]["alignment"])
    assert HOSTILE[1] in shown_text(browser, css(browser, "#article-1")[0])
    shoot(browser, screenshots, "match_report")


@pytest.fixture(scope="module")
def keyed_service(smoke_run, tmp_path_factory):
    log = tmp_path_factory.mktemp("page") / "service.log"
    server, url = start_service(log, "http.api_key_env=UNSPIN_PAGE_KEY", "http.request_timeout_s=600",
                                "scoring.budget_s=3600", "spans=all", env=child_env(UNSPIN_PAGE_KEY=KEY))
    try:
        yield url
    finally:
        server.stop()


def test_service_page_scores_a_pasted_text(keyed_service, browser, screenshots):
    from selenium.webdriver.support.ui import WebDriverWait

    url = keyed_service
    page = httpx.get(f"{url}/")  # no key needed for the page, and none in it
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and KEY not in page.text
    browser.get(f"{url}/")
    form = css(browser, "#unspin-form")[0]
    css(browser, "textarea", form)[0].send_keys(TYPED_TEXT)
    css(browser, "input[name=key]", form)[0].send_keys("wrong key")
    css(browser, "button[type=submit]", form)[0].click()
    WebDriverWait(browser, PATIENCE).until(lambda d: css(d, "#articles .error"))
    assert "401: invalid API key" in css(browser, "#articles")[0].text
    key = css(browser, "input[name=key]", form)[0]
    key.clear()
    key.send_keys(KEY)
    css(browser, "button[type=submit]", form)[0].click()
    card = WebDriverWait(browser, PATIENCE).until(lambda d: css(d, "#articles .card"))[0]
    record = httpx.post(f"{url}/v1/score", json={"id": "pasted", "text": TYPED_TEXT}, headers={"X-API-Key": KEY},
                        timeout=PATIENCE).json()
    assert record["error"] is None and record["spans"]
    assert_score_card(browser, card, record, TYPED_TEXT)
    assert_nothing_ran(browser)
    for h in HOSTILE:
        assert h in shown_text(browser, card)
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched == [f"{url}/v1/score"] * 2  # the two checks, nothing else
    shoot(browser, screenshots, "service_page")


def test_training_logs_the_worst_examples_report(smoke_run, browser, screenshots, tmp_path):
    import mlflow

    run_id = smoke_run["models"]["tagger"]["run_id"]
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/worst_examples.html",
                                               dst_path=str(tmp_path))
    worst = mlflow.artifacts.load_dict(f"runs:/{run_id}/evaluation/worst_examples.json")
    browser.get(f"file://{path}")
    assert_nothing_ran(browser)
    cards = css(browser, ".card")
    assert len(cards) == len(worst["data"]) > 0
    for i, card in enumerate(cards):
        item = browser.execute_script(f"return JSON.parse(document.getElementById('unspin-item-{i}').textContent)")
        assert_score_card(browser, card, item["record"], item["text"])
        assert "truth: " in card.text
    shoot(browser, screenshots, "worst_examples")
