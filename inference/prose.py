"""Which sentences are prose worth scoring.

A clean article copied verbatim from a web page comes wrapped in menus, bylines, timestamps, "Related
Articles" lists and cookie notices. Those fragments are not sentences, the model never saw them in
training, and scoring them would flag clean pages. Each rule below is a regex or a threshold in
`ProseRules`, so a config can override any of them and `explain` says which rule dropped a sentence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import lru_cache

from data.text import WORD_ONLY_RE, sentences

_NAME = r"[A-Z][\w'’.\-]*"
_NAME_SEP = r"(?:\s*[,;&]\s*|\s+(?:and|by|in|of|for|at|de|van|von|der|da|al)\s+|\s+)"


@dataclass(frozen=True)
class ProseRules:
    # A line shorter than this many words without ending punctuation is a fragment (menu, heading).
    min_words: int = 6
    end_punct: str = r"[.!?…][\"'”’»)\]]*$"
    # Navigation: at least nav_min_items short items (<= nav_item_max_words words) between separators.
    nav_separators: str = r"\s*[|·•»›>]\s*|\s+/\s+|\s+[-–—]\s+"
    nav_min_items: int = 3
    nav_item_max_words: int = 4
    # Menus and title-case headlines: this many Title-Cased words and no lowercase content word
    # (a lowercase word outside function_words is the best cheap sign of a verb, i.e. a sentence).
    title_case_min_words: int = 3
    function_words: tuple[str, ...] = (
        "a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "from", "with", "by", "&",
        "vs", "v", "de", "la", "le", "del", "van", "von", "der",
    )
    # Site furniture, matched case-insensitively anywhere in a line of at most boilerplate_max_words words
    # (most are anchored at its start; the cap also keeps the unanchored ones fast on huge lines).
    boilerplate_max_words: int = 80
    boilerplate: tuple[str, ...] = (
        (r"^\W*(?:related|more|other|latest|top|popular|trending|recommended|suggested|featured)\s+"
         r"(?:articles?|stories|news|content|links|topics|reads?|videos?|posts?|coverage|headlines)\b"),
        r"^\W*(?:read|see|watch|listen)\s+(?:more|next|also|the full|full)\b",
        r"^\W*more\s+(?:on this story|from\b|stories\b|like this\b)",
        r"^\W*most\s+(?:read|popular|viewed|shared|watched|commented)\b",
        r"^\W*(?:you (?:may|might) also like|recommended for you|don'?t miss|editor'?s picks?)\b",
        r"^\W*share\s+(?:this|on|via|the|article|story|page)\b|^\W*share\W*$",
        r"^\W*(?:advertisement|advert|ad|sponsored(?: content)?|promoted(?: content)?|paid content)\W*$",
        r"^\W*(?:subscribe|sign[\s-]*(?:up|in)|log[\s-]*in|register|create an account|newsletters?)\b",
        (r"\bcookies?\b.*\b(?:consent|accept|agree|polic(?:y|ies)|settings|preferences|experience|browsing)\b"
         r"|\b(?:use|uses|using|accept|agree)\b.*\bcookies\b"),
        (r"^\W*(?:follow us|like us on|find us on|connect with us|click here|tap here|back to top"
         r"|skip to (?:main )?content|jump to|privacy (?:policy|notice)|terms (?:of (?:use|service)"
         r"|and conditions)|contact us|about us)\b"),
        r"^\W*(?:image|media|video|photo|picture)\s+(?:caption|source|copyright|credit)\b",
        r"^\W*(?:\d+\s+)?comments?(?:\s*\(\d+\))?\W*$|^\W*(?:leave|post|add|view) (?:a |all )?comments?\b",
        r"^\W*(?:print|email|e-mail|tweet|pin)(?: this(?: article| story| page)?)?\W*$",
        r"^\W*(?:loading|please wait)\W*$",
    )
    # "By John Smith", "By John Smith, Reuters", "Reporting by A B; Editing by C D".
    byline: str = (rf"^\s*(?:(?i:(?:additional\s+)?(?:reporting|writing|editing|written|words|story|text"
                   rf"|photos?|photographs?|pictures?|video)\s+))?(?i:by):?\s+{_NAME}"
                   rf"(?:{_NAME_SEP}(?:{_NAME}|\d[\w:.]*))*\s*\.?\s*$")
    byline_max_words: int = 16
    # A timestamp line consists only of these tokens (case-insensitive) and punctuation, with a digit,
    # month or weekday among them: "Published 12:30 GMT, 3 March 2005", "Updated: 2024-01-02".
    date_token: str = (
        r"\d{1,4}(?:st|nd|rd|th|h|am|pm|z|t\d{1,2})?|jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may"
        r"|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
        r"|(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day)?|today|yesterday|am|pm|a|p|m"
        r"|gmt|utc|bst|cet|cest|est|edt|cst|cdt|mst|mdt|pst|pdt|ist|jst|aest|on|at|ago|just|now|hours?"
        r"|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|first|last|published|updated"
        r"|posted|modified|created|filed|date|time"
    )
    date_anchor: str = r"\d|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun)"
    date_punct: str = ",.:/|-–—()+"
    copyright: str = r"©|^\W*\(c\)|^\W*copyright\b|\ball rights reserved\b"
    url_email: str = r"(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"
    # A sentence span made of several lines is non-prose when more than this share of them are.
    line_majority: float = 0.5
    # This many consecutive sentences without ending punctuation are a list of headlines or links.
    headline_run: int = 2

    def __post_init__(self):
        # Configs (YAML/JSON) give lists; keep the dataclass hashable for the compiled-regex cache.
        for f in fields(self):
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))


DEFAULT_RULES = ProseRules()


@lru_cache(maxsize=16)
def _compiled(rules: ProseRules) -> dict:
    i = re.IGNORECASE
    return {
        "end": re.compile(rules.end_punct),
        "nav": re.compile(rules.nav_separators),
        "boilerplate": re.compile("|".join(f"(?:{p})" for p in rules.boilerplate), i),
        "byline": re.compile(rules.byline),
        "date_token": re.compile(rules.date_token, i),
        "date_anchor": re.compile(rules.date_anchor, i),
        "copyright": re.compile(rules.copyright, i),
        "url_email": re.compile(rules.url_email, i),
        "function_words": frozenset(rules.function_words),
    }


def _words(line: str) -> list[str]:
    return [w for w in WORD_ONLY_RE.findall(line) if w.strip("_")]


def line_reason(line: str, rules: ProseRules = DEFAULT_RULES, in_list: bool = False) -> str | None:
    """Why one line is not prose (a rule name), or None if it is. `in_list`: the line is one of
    several in a sentence span, where a line without ending punctuation is a headline/list item."""
    rx = _compiled(rules)
    line = line.strip()
    ws = _words(line)
    ended = rx["end"].search(line) is not None
    if rx["url_email"].search(line) and len(_words(rx["url_email"].sub(" ", line))) < rules.min_words:
        return "url_email"
    if rx["copyright"].search(line):
        return "copyright"
    if len(ws) <= rules.boilerplate_max_words and rx["boilerplate"].search(line):
        return "boilerplate"
    if len(ws) <= rules.byline_max_words and rx["byline"].match(line):
        return "byline"
    if _is_timestamp(line, rules):
        return "timestamp"
    items = [s for s in rx["nav"].split(line) if s.strip()]
    if len(items) >= rules.nav_min_items and all(len(_words(s)) <= rules.nav_item_max_words for s in items):
        return "navigation"
    title_cased = [w for w in ws if w[0].isupper() and not w.isupper()]
    content_lower = [w for w in ws if w[0].islower() and w.lower() not in rx["function_words"]]
    if len(title_cased) >= rules.title_case_min_words and not content_lower:
        return "title_case"
    if not ended and len(ws) < rules.min_words:
        return "short"
    if in_list and not ended:
        return "headline"
    return None


_TOKEN = re.compile(r"\w+|[^\w\s]")


def _is_timestamp(line: str, rules: ProseRules) -> bool:
    rx = _compiled(rules)
    anchored = False
    for m in _TOKEN.finditer(line):  # lazily: most lines fail at their first word
        tok = m.group()
        if tok in rules.date_punct:
            continue
        if not rx["date_token"].fullmatch(tok):
            return False
        anchored = anchored or rx["date_anchor"].match(tok) is not None
    return anchored


def _logical_lines(chunk: str) -> list[str]:
    """Lines of a span, with hard-wrapped prose re-joined: a line continues the previous one when it
    starts in lowercase or the previous one ends mid-clause (comma, dash, a function word)."""
    out: list[list[str]] = []
    for raw in chunk.splitlines():
        line = raw.strip()
        if not line:
            continue
        if out and (line[0].islower() or _MID_CLAUSE.search(out[-1][-1])):
            out[-1].append(line)
        else:
            out.append([line])
    return [" ".join(parts) for parts in out]


_MID_CLAUSE = re.compile(r"(?:[,;:(\-–—]|\b(?:the|a|an|of|to|and|or|in|on|for|with|that|by|at|from|as|is|was"
                         r"|were|are|has|had|have))$")


def explain(text: str, spans: list[tuple[int, int]], rules: ProseRules | None = None) -> list[str | None]:
    """For each sentence span, the rule that makes it non-prose, or None when it is prose."""
    rules = rules or DEFAULT_RULES
    rx = _compiled(rules)
    reasons: list[str | None] = []
    for s, e in spans:
        lines = _logical_lines(text[s:e])
        if len(lines) <= 1:
            reasons.append(line_reason(lines[0] if lines else "", rules))
            continue
        line_reasons = [line_reason(ln, rules, in_list=True) for ln in lines]
        bad = [r for r in line_reasons if r]
        reasons.append(max(set(bad), key=bad.count) if len(bad) > rules.line_majority * len(lines) else None)
    # Runs of unpunctuated sentences (blocks, since sentences end there only at blank lines) are lists
    # of headlines or links; a lone one (an article's title) is left to the rules above.
    i = 0
    while i < len(spans):
        j = i
        while j < len(spans) and not rx["end"].search(text[spans[j][0]:spans[j][1]].rstrip()):
            j += 1
        if j - i >= rules.headline_run:
            for k in range(i, j):
                reasons[k] = reasons[k] or "headline_list"
        i = max(j, i + 1)
    return reasons


def prose_mask(text: str, spans: list[tuple[int, int]], rules: ProseRules | None = None) -> list[bool]:
    """True for each sentence span (from data.text.sentences) that is prose worth scoring."""
    return [r is None for r in explain(text, spans, rules)]


def prose_sentences(text: str, rules: ProseRules | None = None) -> list[tuple[int, int]]:
    """Sentence spans of `text` that are prose."""
    spans = sentences(text)
    return [sp for sp, keep in zip(spans, prose_mask(text, spans, rules)) if keep]
