"""Sentence and word alignment of an input article with a candidate original, for `inference.match`.

A spinner keeps an article's skeleton: the sentences stay in order, names and numbers stay put, and
every change is one word or short phrase swapped for another in the same place ("top diplomat said"
-> "best diplomat stated"). A journalist covering the same story in their own words does something
else: words are dropped, phrases moved, numbers and names added or left out. So:

1. `analyze` splits a text into sentences (data.text), marks which are prose (inference.model.prose) and
   normalises its words (lower case, number words as digits, since spinners write "five" as "5").
2. `align` pairs each input prose sentence with its best reference sentence (shared content words
   propose; a word diff anchored on shared names and numbers decides; a sentence between two aligned
   ones may be paired by position) and reads each pair's diff: `identical` (no edits), `spun` (only
   in-place swaps: bounded, balanced replacements and one- or two-word insertions; no deletion, no
   word moved from one place to another, no number or rare name dropped, no number brought in), or
   `reworded`. The same replacement repeated across sentences counts as a swap whatever it does.
3. `figures` and `relation` (inference.matching.relation) turn the pairs into article-level shares and
   spun_copy / verbatim_copy / partial_copy / independent / no_match. A copy needs at least two copied sentences and a high
   share of copied (identical or spun) words among the aligned ones: human rewording of one story
   (MRPC pairs) passes the per-sentence test now and then, but not sentence after sentence.
"""
from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from data.text import WORD_RE, is_word, sentences
from inference.model.prose import prose_mask

NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
}

# Function words: they neither propose sentence pairs nor count as content.
STOPWORDS = frozenset(["a", "an", "the", "and", "or", "but", "if", "then", "of", "in", "on", "at", "to", "for", "from", "by", "with", "without", "as", "is", "are", "was", "were", "be", "been", "being", "am", "it", "its", "it's", "this", "that", "these", "those", "there", "here", "he", "she", "they", "we", "you", "i", "me", "him", "her", "them", "us", "my", "his", "our", "your", "their", "not", "no", "nor", "so", "than", "too", "very", "can", "could", "will", "would", "shall", "should", "may", "might", "must", "do", "does", "did", "done", "has", "have", "had", "having", "which", "who", "whom", "whose", "what", "when", "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "only", "own", "same", "just", "also", "about", "into", "over", "after", "before", "under", "again", "further", "once", "up", "down", "out", "off", "above", "below", "between", "through", "during", "while", "because", "until", "against", "said", "says", "say", "one", "1"])

# Capitalised words that are not names even in mid-sentence.
STOP_CAPITALS = frozenset({"i", "mr", "mrs", "ms", "dr", "sir", "the", "a", "an", "but", "and", "it", "in", "on",
                           "he", "she", "they", "we", "this", "that", "there", "if", "as", "at", "for", "of",
                           "i'm", "i've", "i'd", "i'll", "ok"})

_APOS = str.maketrans({"’": "'", "‘": "'"})
_OPENERS = set("\"“‘'(:[-–—")


_NORMS: dict[str, str] = {}


def norm(token: str) -> str:
    """Comparison form of a word: lower case, straight apostrophes, number words as digits, no 1,000 commas."""
    t = _NORMS.get(token)
    if t is None:
        if len(_NORMS) > 500_000:
            _NORMS.clear()
        t = _NORMS[token] = _norm(token)
    return t


def _norm(token: str) -> str:
    t = token.lower().translate(_APOS)
    if t in NUMBER_WORDS:
        return NUMBER_WORDS[t]
    if t[:1].isdigit() and "," in t:
        t = t.replace(",", "")
    return t


@dataclass
class NormalisedSentence:
    """A sentence in the form alignment compares: its normalised words, their offsets, which ones a spinner keeps."""

    start: int
    end: int
    prose: bool
    norms: list[str]                # normalised word tokens (punctuation dropped)
    spans: list[tuple[int, int]]    # their character offsets in the document
    fixed: list[bool]               # name (capitalised mid-sentence, acronym) or number: spinners keep these
    hard: list[bool] = field(default_factory=list)  # numbers and rare names: no spinner adds or drops these

    @property
    def n(self) -> int:
        return len(self.norms)


@dataclass
class Doc:
    text: str
    sentences: list[NormalisedSentence]

    @property
    def prose(self) -> list[int]:
        """Indices of the prose sentences (all sentences when none looks like prose)."""
        idx = [k for k, s in enumerate(self.sentences) if s.prose and s.n]
        return idx or [k for k, s in enumerate(self.sentences) if s.n]

    def prose_words(self) -> int:
        return sum(self.sentences[k].n for k in self.prose)


_DIGIT = re.compile(r"\d").search


def sentence_spans(text: str, check_prose: bool = True) -> list[tuple[int, int, bool]]:
    """(start, end, is_prose) of each sentence: what `analyze` needs that is worth storing with a reference."""
    spans = sentences(text)
    mask = prose_mask(text, spans) if check_prose else [True] * len(spans)
    return [(s, e, p) for (s, e), p in zip(spans, mask)]


def analyze(text: str, check_prose: bool = True, is_rare: Callable[[str], bool] | None = None,
            spans: list[tuple[int, int, bool]] | None = None) -> Doc:
    """Sentences of `text` with prose flags and normalised words (offsets into `text`).

    `is_rare` (a word no thesaurus lists) makes names "hard": a spinner can turn "New York" into "Unused
    York" with a phrase dictionary, but never adds or drops a "Bailey" or a "Nvidia". `spans` (from
    `sentence_spans`, stored with a reference) skips sentence splitting and the prose rules."""
    out = []
    for s, e, prose in spans if spans is not None else sentence_spans(text, check_prose):
        norms, wspans, fixed, hard = [], [], [], []
        prev = None
        first = True
        for m in WORD_RE.finditer(text, s, e):
            tok = m.group()
            if not tok[0].isalnum() and (len(tok) == 1 or not is_word(tok)):
                prev = tok
                continue
            n = norm(tok)
            initial = first or (prev is not None and prev in _OPENERS)
            digits = not tok.isalpha() and _DIGIT(tok) is not None  # written as a number (words can be swapped)
            is_num = digits or n.isdigit()  # number words read as digits
            is_name = (tok[0].isupper() and not initial and n not in STOP_CAPITALS) or \
                (len(tok) > 1 and tok.isupper() and tok.isalpha() and n not in STOP_CAPITALS)
            norms.append(n)
            wspans.append(m.span())
            fixed.append(is_num or is_name)
            hard.append(digits or (is_name and is_rare is not None and is_rare(n.removesuffix("'s"))))
            first, prev = False, tok
        out.append(NormalisedSentence(s, e, prose, norms, wspans, fixed, hard))
    return Doc(text, out)


# --- alignment -----------------------------------------------------------------------------------

# Fields and types only: every value is in the `align:` section of configs/match.yaml
# (read by data.configfile), so it is written once.
@dataclass
class AlignConfig:
    pair_candidates: int  # reference sentences (most shared content words) tried per input sentence
    min_shared_words: int  # content words a sentence pair must share to be tried
    min_pair_similarity: float  # difflib ratio over words for a pair to count as aligned
    min_gap_similarity: float  # ... for a sentence between two aligned ones, paired by position
    max_swap_words: int  # a replacement longer than this on either side is rewording
    max_swap_imbalance: int  # ... and so is one whose two sides differ by more words than this
    max_insert_words: int  # a longer insertion is rewording (a spinner's "is" -> "is actually" is 1)
    max_moved_words: int  # more content words than this removed in one place, added in another: rewording
    consistent_repeats: int  # an identical replacement made this often in one article is a dictionary swap


@dataclass
class Pair:
    q: int            # input sentence index
    r: int            # reference sentence index
    similarity: float
    kind: str         # identical | spun | reworded
    equal: int        # input words equal to the reference
    substituted: int  # input words inside in-place swaps
    reworded: int     # words (both sides) in insertions, deletions, long or name/number-changing replacements
    edits: list[dict] = field(default_factory=list)
    moved: bool = False  # content words taken out in one place and put back in another


def _ops(a: NormalisedSentence, b: NormalisedSentence) -> list[tuple[str, int, int, int, int]]:
    """Word diff of two sentences, anchored on the names and numbers they share.

    difflib matches the longest common block first, so in "profit of $3.36bn, up 27% from its" ->
    "profit respecting $3.36bn, levitate 27% exclusive of its" it pairs the two "of"s and reports the
    numbers as deleted and re-inserted. Spinners never move names or numbers, so those are matched
    first and difflib only diffs the stretches between them.
    """
    fa = [i for i, f in enumerate(a.fixed) if f]
    fb = [j for j, f in enumerate(b.fixed) if f]
    anchors = []
    if fa and fb:
        sm = SequenceMatcher(None, [a.norms[i] for i in fa], [b.norms[j] for j in fb], autojunk=False)
        anchors = [(fa[m.a + k], fb[m.b + k]) for m in sm.get_matching_blocks() for k in range(m.size)]
    ops: list[list] = []

    def emit(tag, i1, i2, j1, j2):
        if i1 == i2 and j1 == j2:
            return
        if ops and ops[-1][0] == tag == "equal" and ops[-1][2] == i1 and ops[-1][4] == j1:
            ops[-1][2], ops[-1][4] = i2, j2
        else:
            ops.append([tag, i1, i2, j1, j2])

    pi = pj = 0
    for ai, bj in [*anchors, (a.n, b.n)]:
        if ai > pi or bj > pj:
            sub = SequenceMatcher(None, a.norms[pi:ai], b.norms[pj:bj], autojunk=False)
            for tag, i1, i2, j1, j2 in sub.get_opcodes():
                emit(tag, pi + i1, pi + i2, pj + j1, pj + j2)
        if ai < a.n:
            emit("equal", ai, ai + 1, bj, bj + 1)
        pi, pj = ai + 1, bj + 1
    return [tuple(o) for o in ops]


def is_swap(tag: str, a: list[str], b: list[str], cfg: AlignConfig) -> bool:
    """Whether one diff op of (original words `a`, spun words `b`) looks like a dictionary swap.

    Spinners replace a word or a phrase of up to 3-4 words in place by a synonym of 1-4 words (adjacent
    swaps merge into one op), sometimes by the word plus another ("is" -> "is actually"); they never
    drop words and never change a number (number words are read as digits).
    """
    la, lb = len(a), len(b)
    if tag == "delete":
        return False
    if tag == "insert":
        return lb <= cfg.max_insert_words
    if max(la, lb) > cfg.max_swap_words or abs(la - lb) > cfg.max_swap_imbalance:
        return False
    if lb > 3 * la + 1 or la > 2 * lb + 1:
        return False
    return not (any(_numeric(w) for w in a) and any(_numeric(w) for w in b))


def _numeric(w: str) -> bool:
    return any(ch.isdigit() for ch in w)


def _small_number(w: str) -> bool:
    return w.isdigit() and int(w) <= 12


def _hard_change(ref: NormalisedSentence, inp: NormalisedSentence, i1: int, i2: int, j1: int, j2: int,
                 ref_all, inp_all) -> bool:
    """A number or rare name dropped from the sentence, or a number brought in: what people do, not spinners.

    Allowed: small numbers brought in ("five" -> "5", "year" -> "12 months"), names brought in (thesauri
    have some: "local" -> "Pullman car"), number words swapped ("eleven" -> "teens")."""
    if any(h and w not in inp_all for w, h in zip(ref.norms[i1:i2], ref.hard[i1:i2])):
        return True
    for w, h in zip(inp.norms[j1:j2], inp.hard[j1:j2]):
        if h and w not in ref_all and _numeric(w) and not _small_number(w):
            return True
    return False


def _merge_short_equals(opcodes, ref: NormalisedSentence, inp: NormalisedSentence,
                        cfg: AlignConfig) -> list[tuple]:
    """Absorb a one-word equal run between two edits into one replacement, where that mends an edit.

    Within a stretch of adjacent swaps difflib may match a stray function word across them ("move to a
    small town by" -> "maneuver against a slim village according to" pairs the two "to"s), which splits
    the swaps into a lopsided replacement and a deletion. Read as one replacement, the stretch is a
    balanced swap. Only function words are absorbed (never a number or a name), and only next to an
    edit that is not a swap by itself, so stretches of good swaps are not glued into one long edit.
    """
    ops = [list(o) for o in opcodes]

    def swap(o) -> bool:
        return o[0] != "equal" and is_swap(o[0], ref.norms[o[1]:o[2]], inp.norms[o[3]:o[4]], cfg)

    k = 1
    while k < len(ops) - 1:
        tag, i1, i2 = ops[k][:3]
        prev, nxt = ops[k - 1], ops[k + 1]
        if (tag == "equal" and i2 - i1 == 1 and prev[0] != "equal" and nxt[0] != "equal"
                and ref.norms[i1] in STOPWORDS and not ref.fixed[i1] and not _numeric(ref.norms[i1])
                and not (swap(prev) and swap(nxt))):
            ops[k - 1:k + 2] = [["replace", prev[1], nxt[2], prev[3], nxt[4]]]
            k = max(1, k - 1)
        else:
            k += 1
    return [tuple(o) for o in ops]


def _read_ops(ref: NormalisedSentence, inp: NormalisedSentence, opcodes, ref_text: str, inp_text: str,
              cfg: AlignConfig):
    equal = substituted = reworded = 0
    edits = []
    ref_changed: dict[str, set[int]] = {}  # word -> the edits it was taken out of / put in by
    inp_changed: dict[str, set[int]] = {}
    ref_all, inp_all = set(ref.norms), set(inp.norms)
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            equal += j2 - j1
            continue
        la, lb = i2 - i1, j2 - j1
        for w in ref.norms[i1:i2]:
            ref_changed.setdefault(w, set()).add(len(edits))
        for w in inp.norms[j1:j2]:
            inp_changed.setdefault(w, set()).add(len(edits))
        swap = is_swap(tag, ref.norms[i1:i2], inp.norms[j1:j2], cfg) and not _hard_change(ref, inp, i1, i2, j1, j2,
                                                                                       ref_all, inp_all)
        if swap:
            substituted += lb
        else:
            reworded += la + lb
        # Show an insertion/deletion as a phrase swap with the words around it: "is" -> "is actually" and
        # "to" -> "en route to" both read as "failed to hold" -> "failed en route to hold".
        a1, b1 = i1, j1
        if la == 0 or lb == 0:
            if i1 > 0 and j1 > 0:
                a1, b1 = i1 - 1, j1 - 1
            if i2 < ref.n and j2 < inp.n:
                i2, j2 = i2 + 1, j2 + 1
        os_, oe = (ref.spans[a1][0], ref.spans[i2 - 1][1]) if i2 > a1 else (ref.spans[min(a1, ref.n - 1)][0],) * 2
        is_, ie = (inp.spans[b1][0], inp.spans[j2 - 1][1]) if j2 > b1 else (inp.spans[min(b1, inp.n - 1)][0],) * 2
        edits.append({"original": ref_text[os_:oe], "spun": inp_text[is_:ie],
                      "original_start": os_, "original_end": oe, "input_start": is_, "input_end": ie,
                      "swap": swap})
    # A content word taken out in one place and put back in another was moved: rewording, not a swap.
    # (within one edit a shared word is just aligned loosely: "move to a small town" -> "move toward a
    # slender town according to"; across edits it went somewhere else).
    moved_words = [w for w, ops in ref_changed.items()
                   if w not in STOPWORDS and w in inp_changed and (ops | inp_changed[w]) != ops & inp_changed[w]]
    moved = len(moved_words) > cfg.max_moved_words
    return equal, substituted, reworded, moved, edits


def diff_pair(ref: NormalisedSentence, inp: NormalisedSentence, q: int, r: int, ref_text: str, inp_text: str,
              cfg: AlignConfig, similarity: float, opcodes=None) -> Pair:
    """Read the word diff of an aligned pair (reference = original side, input = spun side)."""
    opcodes = opcodes if opcodes is not None else _ops(ref, inp)
    equal, substituted, reworded, moved, edits = _read_ops(ref, inp, opcodes, ref_text, inp_text, cfg)
    if reworded or moved:
        merged = _merge_short_equals(opcodes, ref, inp, cfg)
        if merged != opcodes:
            second = _read_ops(ref, inp, merged, ref_text, inp_text, cfg)
            if second[2] == 0 and not second[3]:
                equal, substituted, reworded, moved, edits = second
    if not edits:
        kind = "identical"
    elif reworded == 0 and not moved:
        kind = "spun"
    else:
        kind = "reworded"
    return Pair(q, r, round(similarity, 4), kind, equal, substituted, reworded, edits, moved)


def align(inp: Doc, ref: Doc, cfg: AlignConfig) -> list[Pair]:
    """Best reference sentence for each input prose sentence, where one is similar enough."""
    ref_idx = ref.prose
    postings: dict[str, list[int]] = {}
    for r in ref_idx:
        for w in set(ref.sentences[r].norms):
            if w not in STOPWORDS:
                postings.setdefault(w, []).append(r)
    content = {r: set(ref.sentences[r].norms) - STOPWORDS for r in ref_idx}
    pairs = []
    for q in inp.prose:
        s = inp.sentences[q]
        mine = set(s.norms) - STOPWORDS
        shared: Counter = Counter()
        for w in mine:
            shared.update(postings.get(w, ()))
        best = None
        # Ties go to the earlier reference sentence (Counter order follows the set `mine`: random per process).
        for r, c in heapq.nsmallest(cfg.pair_candidates, shared.items(), key=lambda rc: (-rc[1], rc[0])):
            if c < cfg.min_shared_words and c < len(mine):
                break
            dice = 2 * c / (len(mine) + len(content[r]))  # cheap stand-in for the word diff, to choose
            if best is None or dice > best[0]:
                best = (dice, r)
        if best is None:
            continue
        rs = ref.sentences[best[1]]
        ops = _ops(rs, s)
        ratio = 2 * sum(j2 - j1 for tag, _, _, j1, j2 in ops if tag == "equal") / max(1, rs.n + s.n)
        if ratio >= cfg.min_pair_similarity:
            pairs.append(diff_pair(rs, s, q, best[1], ref.text, inp.text, cfg, ratio, ops))
    return _consistent_swaps(_fill_gaps(inp, ref, pairs, cfg), cfg)


def _consistent_swaps(pairs: list[Pair], cfg: AlignConfig) -> list[Pair]:
    """The same replacement made in several sentences ("January" -> "Gregorian calendar month one" each
    time) is a dictionary at work, whatever it does to names: count those edits as swaps."""
    sig = lambda e: (e["original"].lower(), e["spun"].lower())
    seen = Counter(sig(e) for p in pairs for e in p.edits if not e["swap"] and e["original"] and e["spun"])
    repeated = {k for k, n in seen.items() if n >= cfg.consistent_repeats}
    if not repeated:
        return pairs
    for p in pairs:
        changed = False
        for e in p.edits:
            if not e["swap"] and sig(e) in repeated:
                e["swap"], changed = True, True
        if changed and all(e["swap"] for e in p.edits) and not p.moved:
            p.kind = "spun"
            p.substituted += p.reworded // 2
            p.reworded = 0
    return pairs


def _fill_gaps(inp: Doc, ref: Doc, pairs: list[Pair], cfg: AlignConfig) -> list[Pair]:
    """Align a heavily spun sentence by position: an unaligned input sentence whose neighbours are aligned
    to consecutive-but-one reference sentences (q-1 -> r-1, q+1 -> r+1) is paired with r when they are
    at least `min_gap_similarity` alike."""
    if not pairs or cfg.min_gap_similarity >= cfg.min_pair_similarity:
        return pairs
    by_q = {p.q: p for p in pairs}
    prose_q, prose_r = inp.prose, set(ref.prose)
    pos = {q: k for k, q in enumerate(prose_q)}
    taken = {p.r for p in pairs}
    added = []
    for q in prose_q:
        if q in by_q:
            continue
        k = pos[q]
        prev = by_q.get(prose_q[k - 1]) if k > 0 else None
        nxt = by_q.get(prose_q[k + 1]) if k + 1 < len(prose_q) else None
        if prev is None and nxt is None:
            continue
        r = prev.r + 1 if prev is not None else nxt.r - 1
        if r not in prose_r or r in taken or (prev is not None and nxt is not None and nxt.r != r + 1):
            continue
        rs, s = ref.sentences[r], inp.sentences[q]
        ops = _ops(rs, s)
        equal = sum(j2 - j1 for tag, _, _, j1, j2 in ops if tag == "equal")
        ratio = 2 * equal / max(1, rs.n + s.n)
        if ratio >= cfg.min_gap_similarity:
            added.append(diff_pair(rs, s, q, r, ref.text, inp.text, cfg, ratio, ops))
            taken.add(r)
    return sorted(pairs + added, key=lambda p: p.q) if added else pairs
