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

from data.text import (
    NOT_SPACE,
    NOT_WORD_CHAR,
    SPACE,
    SPACE_CHARS,
    WORD_CHAR,
    WORD_CHARS,
    WORD_ONLY_RE,
    re2_compile,
)

# RE2 has no Unicode \s, \w, \d or \b, and no lookarounds: the rules spell them out with these.
_S, _NS, _W, _NW, _D = SPACE, NOT_SPACE, WORD_CHAR, NOT_WORD_CHAR, r"\p{Nd}"
_B0 = f"(?:^|{_NW})"  # \b before a word: consumes the character before it (the rules only test for a match)
_B1 = f"(?:{_NW}|$)"  # \b after a word
_GAP = f"[^{WORD_CHARS}\\n](?:.*[^{WORD_CHARS}\\n])?"  # \b.*\b between two words on one line
_NAME = rf"[A-Z][{WORD_CHARS}'’.\-]*"
_NAME_SEP = rf"(?:{_S}*[,;&]{_S}*|{_S}+(?:and|by|in|of|for|at|de|van|von|der|da|al){_S}+|{_S}+)"


@dataclass(frozen=True)
class ProseRules:
    """The rules' regexes are RE2 syntax (linear-time matching on any text; see data.text): no lookarounds,
    and \\s, \\w, \\d, \\b mean ASCII only there, hence the Unicode classes above in the defaults."""
    # A line shorter than this many words without ending punctuation is a fragment (menu, heading).
    min_words: int = 6
    end_punct: str = r"[.!?…][\"'”’»)\]]*$"
    # Navigation: at least nav_min_items short items (<= nav_item_max_words words) between separators.
    nav_separators: str = rf"{_S}*[|·•»›>]{_S}*|{_S}+/{_S}+|{_S}+[-–—]{_S}+"
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
    # (most are anchored at its start).
    boilerplate_max_words: int = 80
    boilerplate: tuple[str, ...] = (
        (rf"^{_NW}*(?:related|more|other|latest|top|popular|trending|recommended|suggested|featured){_S}+"
         rf"(?:articles?|stories|news|content|links|topics|reads?|videos?|posts?|coverage|headlines){_B1}"),
        rf"^{_NW}*(?:read|see|watch|listen){_S}+(?:more|next|also|the full|full){_B1}",
        rf"^{_NW}*more{_S}+(?:on this story|from{_B1}|stories{_B1}|like this{_B1})",
        rf"^{_NW}*most{_S}+(?:read|popular|viewed|shared|watched|commented){_B1}",
        rf"^{_NW}*(?:you (?:may|might) also like|recommended for you|don'?t miss|editor'?s picks?){_B1}",
        rf"^{_NW}*share{_S}+(?:this|on|via|the|article|story|page){_B1}|^{_NW}*share{_NW}*$",
        rf"^{_NW}*(?:advertisement|advert|ad|sponsored(?: content)?|promoted(?: content)?|paid content){_NW}*$",
        (rf"^{_NW}*(?:subscribe|sign[{SPACE_CHARS}\-]*(?:up|in)|log[{SPACE_CHARS}\-]*in|register|create an account"
         rf"|newsletters?){_B1}"),
        (rf"{_B0}cookies?{_GAP}(?:consent|accept|agree|polic(?:y|ies)|settings|preferences|experience|browsing){_B1}"
         rf"|{_B0}(?:use|uses|using|accept|agree){_GAP}cookies{_B1}"),
        (rf"^{_NW}*(?:follow us|like us on|find us on|connect with us|click here|tap here|back to top"
         rf"|skip to (?:main )?content|jump to|privacy (?:policy|notice)|terms (?:of (?:use|service)"
         rf"|and conditions)|contact us|about us){_B1}"),
        rf"^{_NW}*(?:image|media|video|photo|picture){_S}+(?:caption|source|copyright|credit){_B1}",
        (rf"^{_NW}*(?:{_D}+{_S}+)?comments?(?:{_S}*\({_D}+\))?{_NW}*$"
         rf"|^{_NW}*(?:leave|post|add|view) (?:a |all )?comments?{_B1}"),
        rf"^{_NW}*(?:print|email|e-mail|tweet|pin)(?: this(?: article| story| page)?)?{_NW}*$",
        rf"^{_NW}*(?:loading|please wait){_NW}*$",
    )
    # "By John Smith", "By John Smith, Reuters", "Reporting by A B; Editing by C D".
    byline: str = (rf"^{_S}*(?:(?i:(?:additional{_S}+)?(?:reporting|writing|editing|written|words|story|text"
                   rf"|photos?|photographs?|pictures?|video){_S}+))?(?i:by):?{_S}+{_NAME}"
                   rf"(?:{_NAME_SEP}(?:{_NAME}|{_D}[{WORD_CHARS}:.]*))*{_S}*\.?{_S}*$")
    byline_max_words: int = 16
    # A timestamp line consists only of these tokens (case-insensitive) and punctuation, with a digit,
    # month or weekday among them: "Published 12:30 GMT, 3 March 2005", "Updated: 2024-01-02".
    date_token: str = (
        rf"{_D}{{1,4}}(?:st|nd|rd|th|h|am|pm|z|t{_D}{{1,2}})?|jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may"
        r"|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
        r"|(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day)?|today|yesterday|am|pm|a|p|m"
        r"|gmt|utc|bst|cet|cest|est|edt|cst|cdt|mst|mdt|pst|pdt|ist|jst|aest|on|at|ago|just|now|hours?"
        r"|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|first|last|published|updated"
        r"|posted|modified|created|filed|date|time"
    )
    date_anchor: str = rf"{_D}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun)"
    date_punct: str = ",.:/|-–—()+"
    copyright: str = rf"©|^{_NW}*\(c\)|^{_NW}*copyright{_B1}|{_B0}all rights reserved{_B1}"
    # A URL, or an e-mail address (local part holding a letter or digit; domain ending in one).
    url_email: str = (rf"(?:https?://|www\.){_NS}+"
                      rf"|[.+\-]*{_W}[{WORD_CHARS}.+\-]*@[{WORD_CHARS}\-]+(?:\.[{WORD_CHARS}\-]+)*\.[{WORD_CHARS}\-]*{_W}")
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
    return {
        "end": re2_compile(rules.end_punct),
        "nav": re2_compile(rules.nav_separators),
        "boilerplate": re2_compile("|".join(f"(?:{p})" for p in rules.boilerplate), ignore_case=True),
        "byline": re2_compile(rules.byline),
        "date_token": re2_compile(rules.date_token, ignore_case=True),
        "date_anchor": re2_compile(rules.date_anchor, ignore_case=True),
        "copyright": re2_compile(rules.copyright, ignore_case=True),
        "url_email": re2_compile(rules.url_email, ignore_case=True),
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


_TOKEN = re.compile(r"\w+|[^\w\s]")  # a tokenizer, linear in `re` like data.text's (one step per character)


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


_MID_CLAUSE = re2_compile(rf"(?:[,;:(\-–—]|{_B0}(?:the|a|an|of|to|and|or|in|on|for|with|that|by|at|from|as|is"
                          r"|was|were|are|has|had|have))$")


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

