"""HTML views of score and match records: the batch reports (`--report` of inference.score and inference.match),
the service's paste-and-check page (GET /) and the worst test examples `make train` logs to MLflow.

Every view is one self-contained page: inline CSS and JS, no network (a Content-Security-Policy with the hashes
of the page's own style and script forbids anything else). Jinja2 (autoescape on) writes the page; the records
and texts go in as JSON (`tojson`: `<`, `>`, `&` and `'` escaped, so no text can end its script element), and
report.js builds every element from them with the DOM API (textContent, never innerHTML): a text holding
`<script>` or `<img onerror=...>` is shown as those characters, never run. The same report.js draws the page the
service serves from a POST /v1/score answer, so every view of a record looks the same.

A report is written while its batch runs: each article's data goes to a temporary file as its record is written,
and only the overview rows (id, score, label, top spans...) stay in memory. Each article is its own JSON element,
parsed only when its page is shown (`page_size` in configs/report.yaml), so 10,000 records open without delay.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from data import configfile as cfglib
from inference.model.record import plain, top_spans

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "report.yaml"
TEMPLATES = Path(__file__).resolve().parent / "templates"
# Lone surrogates (ids read with undecodable escapes) cannot be written as UTF-8; JSON can spell them.
_SURROGATE = re.compile("[\ud800-\udfff]")


# Fields and types only: every value is in configs/report.yaml (data.configfile), so it is written once.
@dataclass
class ReportConfig:
    page_size: int
    top_spans: int


def load_config(path: str | Path | None = None) -> ReportConfig:
    cfg = cfglib.load(path or CONFIG, ReportConfig)
    if cfg.page_size < 1 or cfg.top_spans < 0:
        raise cfglib.ConfigError(f"page_size must be >= 1 and top_spans >= 0 [in {path or CONFIG}]")
    return cfg


def _dumps(obj, **kwargs) -> str:
    # Non-ASCII text stays as it is (a report of Cyrillic news is not six times larger); numpy values as Python's.
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_shown)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _shown(value):
    try:
        return plain(value)
    except TypeError:  # a page shows what it can of any other value rather than fail
        return str(value)


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      keep_trailing_newline=True)
    env.policies["json.dumps_function"] = _dumps  # `tojson` then escapes < > & ' for HTML
    return env


_ENV = None


def template(name: str):
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV.get_template(name)


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def page_context(connect: bool = False) -> dict:
    """The inline style and script of every view, and the policy that allows only those two (and, for the
    service page, requests to its own origin)."""
    css, js = _asset("report.css"), _asset("report.js")
    csp = (f"default-src 'none'; style-src '{_sha256(css)}'; script-src '{_sha256(js)}'; "
           f"img-src 'none'; form-action 'none'; base-uri 'none'" + ("; connect-src 'self'" if connect else ""))
    return {"css": Markup(css), "js": Markup(js), "csp": csp}


# ---- overview rows: what the table shows and sorts (the article view reads the whole record) ----------

SCORE_COLUMNS = [("id", "id", "text"), ("score", "score", "number"), ("label", "label", "text"),
                 ("spans", "spans", "number"), ("top", "top spans", "text"), ("error", "error", "text")]
MATCH_COLUMNS = [("id", "id", "text"), ("relation", "relation", "text"), ("source", "source", "text"),
                 ("word_match", "word match", "number"), ("swaps", "substitutions", "number"),
                 ("error", "error", "text")]
EXAMPLE_COLUMNS = SCORE_COLUMNS[:3] + [("truth", "truth", "text"), ("kind", "level / kind / spinner", "text")] + \
    SCORE_COLUMNS[3:]


def score_row(record: dict, top: int) -> dict:
    spans = record.get("spans") or []
    return {"id": record.get("id"), "score": record.get("score"), "label": record.get("label") or "error",
            "spans": len(spans), "top": top_spans(spans, top), "error": record.get("error")}


def match_row(record: dict) -> dict:
    best = (record.get("candidates") or [None])[0] or {}
    sim = best.get("similarity") or {}
    return {"id": record.get("id"), "relation": record.get("relation") or "error", "source": record.get("source"),
            "word_match": sim.get("word_match"), "swaps": sim.get("swaps"), "error": record.get("error")}


class Report:
    """An HTML report written while a batch runs: `add` each article as its record is written, `close` at the end
    (the file appears then, whole: it is written under a temporary name and renamed)."""

    def __init__(self, path: str | Path, kind: str, title: str, cfg: ReportConfig | None = None):
        self.path, self.kind, self.title = Path(path), kind, title
        self.cfg = cfg or load_config()
        self.columns = {"score": SCORE_COLUMNS, "match": MATCH_COLUMNS, "examples": EXAMPLE_COLUMNS}[kind]
        self.rows: list[list] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The articles' JSON waits on disk, not in memory (a report may hold 10,000 texts).
        self._items = tempfile.TemporaryFile(  # noqa: SIM115 (closed in close())
            "w+", encoding="utf-8", dir=self.path.parent, prefix=".unspin-report-")

    def add(self, row: dict, item: dict) -> None:
        """One article: its overview `row` (keys of the columns) and what its view needs (`item`: record, text,
        and for a match the best candidate's reference)."""
        self.rows.append([row.get(key) for key, _, _ in self.columns])
        self._items.write(htmlsafe_json_dumps(item, dumps=_dumps) + "\n")  # as `tojson`: cannot end its element

    def add_score(self, text: str | None, record: dict, note: str | None = None, **cells) -> None:
        """A score record over its text; `note` is shown in the article's header, `cells` in the overview."""
        self.add({**score_row(record, self.cfg.top_spans), **cells}, {"record": record, "text": text, "note": note})

    def close(self, summary: str = "") -> Path:
        index = {"kind": self.kind, "title": self.title, "page_size": self.cfg.page_size,
                 "filter": {"score": "label", "examples": "label", "match": "relation"}[self.kind],
                 "columns": [{"key": k, "label": label, "type": t} for k, label, t in self.columns], "rows": self.rows}
        self._items.seek(0)
        items = (Markup(line.rstrip("\n")) for line in self._items)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                template("report.html.j2").stream(title=self.title, summary=summary, index=index, items=items,
                                                  **page_context()).dump(f)
            os.replace(tmp, self.path)
        finally:
            self._items.close()
            tmp.unlink(missing_ok=True)
        return self.path


def summary_line(counts: dict, names: list[str], model: dict | None = None, threshold: float | None = None) -> str:
    parts = [f"{counts.get('records', 0):,} records"] + [f"{counts.get(n, 0):,} {n}" for n in names]
    if counts.get("skipped"):
        parts.append(f"{counts['skipped']:,} skipped (resumed run: not in this report)")
    text = ", ".join(parts)
    if model:
        text += f"; model {model.get('name')} v{model.get('version')}"
    if threshold is not None:
        text += f", threshold {threshold:.3f}"
    return text


def service_page(key_header: str | None) -> str:
    """The service's paste-and-check page. `key_header`: the header the API key goes in, when the service
    requires one (the page asks for the key and sends it; the page itself never holds one)."""
    return template("page.html.j2").render(title="unspin: check a text", key_header=key_header,
                                           **page_context(connect=True))


def examples_report(det, examples: list[dict], rows: list[dict]) -> str:
    """The HTML of the worst test examples of a model (train.evaluate.worst_examples): each text scored again in
    full by `det` and shown highlighted, with its truth (spun or clean; level, kind, spinner)."""
    text = {r["id"]: r["text"] for r in rows}
    records = det.score([text[e["id"]] for e in examples], ids=[e["id"] for e in examples])
    with tempfile.TemporaryDirectory() as tmp:
        report = Report(Path(tmp) / "worst_examples.html", "examples", f"{det.model_info['name']}: worst test examples")
        for e, rec in zip(examples, records):
            truth, kind = "spun" if e["label"] else "clean", f"{e['level']} / {e['kind']} / {e['spinner']}"
            report.add_score(text[e["id"]], rec, f"truth: {truth} ({kind})", truth=truth, kind=kind)
        return report.close(f"{len(examples)} test texts the model got most wrong: clean texts scored highest, "
                            f"spun texts lowest; threshold {det.threshold:.3f}").read_text(encoding="utf-8")
