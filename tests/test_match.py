"""Reference mode (inference.match): attribution of spun, verbatim and partial copies to their original,
the same-story-own-words hard negative, the appendable index and the batch command."""
import csv
import dataclasses
import json
import os
import sqlite3
from collections import Counter

import numpy as np
import pytest

from data.build import load_config as load_data_config
from data.spinners import Resources, make_spinners
from inference import match
from inference.matching.align import align, analyze
from inference.matching.index import ReferenceIndex
from inference.matching.store import IndexStateError
from tests.conftest import PARAGRAPHS, ROOT

MATCH = match.load_config()  # configs/match.yaml: the settings the command runs with


def best(candidates: int):
    """The retrieval settings the command runs with, searching by the whole text only for `candidates`."""
    return dataclasses.replace(MATCH.retrieval, candidates=candidates, passage_candidates=0)

# Fixture originals: realistic news articles with names, numbers and ordinary prose.
ARTICLES = {
    "wire-rates": (
        "Central bank raises interest rates to 4.5%",
        ("The Bank of England raised interest rates on Thursday for the third time this year, lifting the "
         "base rate to 4.5% as officials tried to bring inflation back towards its target. The decision by "
         "the Monetary Policy Committee was approved by seven votes to two.\n\n"
         "Governor Andrew Bailey said the committee had acted because prices were still rising too quickly "
         "in the shops. He warned that households with variable mortgages would face higher monthly payments, "
         "but argued that waiting longer would have caused greater damage to the economy.\n\n"
         "Economists at Barclays had expected the increase, although some had predicted a smaller rise of "
         "0.25 percentage points. Sterling climbed against the dollar shortly after the announcement, while "
         "shares in house builders fell sharply in London.\n\n"
         "The Treasury said it supported the independent judgement of the central bank. Opposition "
         "politicians said families were paying the price for years of weak growth and called for more help "
         "with energy bills during the coming winter.\n\n"
         "The next decision on interest rates is due in early November, when the bank will also publish new "
         "forecasts for growth and unemployment.")),
    "wire-flood": (
        "Thousands leave homes as river bursts its banks",
        ("More than 3,000 people were forced to leave their homes in northern Portugal after the Douro river "
         "burst its banks following four days of heavy rain. Emergency services said the water rose by almost "
         "two metres overnight in the town of Peso da Regua.\n\n"
         "Firefighters used small boats to rescue elderly residents who had been trapped on the upper floors of "
         "their houses. The regional civil protection agency said 14 people had been taken to hospital with "
         "minor injuries, but nobody was reported missing.\n\n"
         "Prime Minister Luis Montenegro visited the area on Sunday and promised that the government would "
         "release emergency funds to help families and farmers repair the damage. Several vineyards along the "
         "valley were badly flooded just weeks before the harvest.\n\n"
         "Forecasters expect the rain to ease by Tuesday, although officials warned that the river could remain "
         "dangerously high for several more days. Schools in the district will stay closed until further notice.")),
    "wire-chip": (
        "Chipmaker unveils faster processor for data centres",
        ("The chipmaker Nvidia has unveiled a new processor that it says will train artificial intelligence "
         "models twice as fast as its previous design. The company expects the chip to reach customers in the "
         "second half of 2025.\n\n"
         "Chief executive Jensen Huang told a conference in San Jose that demand from cloud providers was "
         "stronger than ever. He said big data and artificial intelligence were changing the way that almost "
         "every industry worked, from banking to medicine.\n\n"
         "Analysts said the launch would help the firm defend its lead over rivals such as AMD and Intel, which "
         "are both developing competing products. Shares in the company rose 3% in after-hours trading.\n\n"
         "The new design uses less power than earlier models, an important selling point for data centres that "
         "face rising electricity costs. Researchers said the chip could also speed up data mining in very "
         "large databases.")),
    "wire-final": (
        "Late goal settles a dramatic cup final",
        ("Arsenal won the FA Cup final on Saturday after a late goal from Bukayo Saka settled a tense match "
         "against Chelsea at Wembley. The winger scored in the 87th minute after a long period of pressure from "
         "both teams.\n\n"
         "Manager Mikel Arteta praised the young players for their effort and said the victory was the reward "
         "for a difficult season. Chelsea had taken the lead early in the second half through Cole Palmer, "
         "but failed to hold on.\n\n"
         "More than 89,000 supporters watched the game, and thousands of fans gathered in north London "
         "afterwards to celebrate. The club said an open-top bus parade would be held through Islington on "
         "Monday.\n\n"
         "It was the fifteenth time that Arsenal have won the competition, more than any other club in the "
         "history of English football.")),
    "wire-homes": (
        "Government sets out plan for new homes",
        ("The government has announced plans to build 300,000 new homes every year until 2030, in an attempt to "
         "tackle a housing shortage that has pushed prices out of reach for many young people. Housing "
         "secretary Angela Rayner said the plans would change the planning rules in most regions.\n\n"
         "Local councils will be given targets for the number of houses they must approve, and developers will "
         "be required to include affordable homes in large projects. Critics said the scheme was unlikely to "
         "help first-time buyers, who face high deposits.\n\n"
         "The National Housing Federation welcomed the announcement but said the government would also need to "
         "invest in social housing. Builders warned that a shortage of skilled workers could delay "
         "construction.\n\n"
         "Ministers expect the first changes to the planning system to come into force next spring, after a "
         "consultation with councils and residents.")),
    "wire-film": (
        "Festival opens with seaside family drama",
        ("The Venice film festival opened on Wednesday with a drama about a family who move to a small town by "
         "the sea after the father loses his job. The film, directed by Alice Rohrwacher, is one of 21 "
         "competing for the Golden Lion.\n\n"
         "The director told reporters that the story was inspired by her own childhood in Tuscany, and that "
         "she had cast several local people who had never acted before. Critics described the opening "
         "night as warm and funny.\n\n"
         "The festival runs for eleven days and will close with the award ceremony on 9 September. Organisers "
         "said more than 60 films would be shown, including several documentaries about climate change.")),
}

# The same events told by other outlets in their own words: the hard negative.
SAME_STORY = {
    "other-rates": (
        "Policymakers in London pushed borrowing costs up again on Thursday. Andrew Bailey's Bank of England "
        "now charges 4.5%, its highest level in fifteen years, after a split vote on the Monetary Policy "
        "Committee.\n\n"
        "Home owners on tracker deals will feel the change first. Analysts had been divided on the size of the "
        "move, and the pound strengthened once the result was published, while housebuilding stocks slid.\n\n"
        "Ministers at the Treasury backed the bank, but opposition MPs blamed the government for a cost of "
        "living crisis that they said had lasted far too long."),
    "other-final": (
        "Bukayo Saka was the hero at Wembley as his header three minutes from time gave Arsenal the FA Cup. "
        "Chelsea, who went ahead through Cole Palmer shortly after half-time, were left to rue missed "
        "chances.\n\n"
        "Mikel Arteta, whose side had struggled for consistency all year, called it a night the club would "
        "never forget. The holders will parade the trophy around Islington on Monday afternoon, the club "
        "confirmed.\n\n"
        "Arsenal's record tally of cup wins now stands at fifteen."),
}

# Sentences of the same events from different outlets, MRPC-style (the conftest corpus has three such pairs).
MRPC_STYLE = [
    ("The foreign minister said on Monday that talks with the neighbouring country had made good progress.",
     "On Monday the foreign minister told reporters the talks were going well."),
    ("The company reported a sharp rise in quarterly profits, helped by strong sales of its new phones.",
     "Quarterly profit at the company climbed sharply on the back of phone sales."),
    ("Researchers have developed a new method of data mining that finds patterns in very large databases.",
     "A new data mining technique spots patterns in huge databases, researchers say."),
    ("Officials expect the agreement to open the border to trade and to strengthen economic support for farmers.",
     "The deal is expected to reopen cross-border trade and give farmers more economic help, officials said."),
    ("The government announced plans to build thousands of new homes over the next ten years.",
     "Thousands of new homes will be built over the coming decade under plans announced by the government."),
    ("Fans gathered in the city centre to celebrate, and the club said a parade would be held next week.",
     "The club will hold a parade next week, it said, as supporters celebrated in the centre of the city."),
]

LEXICON = [  # tortured forms of phrases the fixture articles use (expected -> tortured)
    ("counterfeit consciousness", "artificial intelligence"), ("enormous information", "big data"),
    ("information mining", "data mining"), ("intrigue rates", "interest rates"),
    ("atmosphere alteration", "climate change"), ("crisis administrations", "emergency services"),
    ("monetary strategy", "policy committee"), ("associate in nursingd", "and"),
    ("overwhelming precipitation", "heavy rain"), ("head serve", "prime minister"), ("film celebration", "film festival"),
    ("neighborhood chambers", "local councils"), ("reasonable homes", "affordable homes"),
    ("information communities", "data centres"), ("cutting edge design", "new design"),
]

BOILERPLATE_TOP = ("Home | News | Business | Sport | Weather | Contact\n\nBy Jane Smith, Staff Reporter\n\n"
                   "Published 12:30 GMT, 3 March 2025\n\n")
BOILERPLATE_BOTTOM = ("\n\nRelated Articles\n\nMarkets rally as rates hold\nMinister quits over row\nStorm hits "
                      "coast\n\nShare this story\n\nCopyright 2025 Example News. All rights reserved.")


def jl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def paragraphs(text):
    return text.split("\n\n")


@pytest.fixture(scope="module")
def spinners(tmp_path_factory):
    """Thesaurus spinners at low and high rates and the lexicon spinner, over the fixture lexicon."""
    d = tmp_path_factory.mktemp("lexicon")
    lex = d / "tortured_phrases.tsv"
    with open(lex, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["tortured", "expected", "num_papers", "query_context", "sources", "expected_uncertain"])
        w.writerows([t, e, 50, "", "x", 0] for t, e in LEXICON)
    out = {}
    for name, rate in [("low", "[0.15, 0.25]"), ("mid", "[0.35, 0.45]"), ("high", "[0.55, 0.6]")]:
        cfg = load_data_config(ROOT / "configs/data.yaml", [f"spinners.moby.rate={rate}"])
        out[f"thesaurus-{name}"] = make_spinners(cfg.spinners, Resources(lex, Counter()), {"moby"})["moby"]
    cfg = load_data_config(ROOT / "configs/data.yaml", ["spinners.lexicon.rate=[0.8, 1.0]"])
    out["lexicon"] = make_spinners(cfg.spinners, Resources(lex, Counter()), {"lexicon"})["lexicon"]
    return out


def reference_rows() -> list[dict]:
    """Originals plus distractors: distinct three-paragraph articles from conftest PARAGRAPHS."""
    rows = [{"id": k, "title": t, "text": x} for k, (t, x) in ARTICLES.items()]
    for i in range(12):
        rows.append({"id": f"fixture-{i:02d}", "text": "\n\n".join(PARAGRAPHS[(i + k) % 12] for k in range(3))})
    rows.append({"id": "fixture-mrpc", "text": "\n\n".join(a for a, _ in MRPC_STYLE)})
    return rows


REF_TEXTS = {r["id"]: r["text"] for r in reference_rows()}


@pytest.fixture(scope="module")
def refs_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    (d / "refs.jsonl").write_text(jl(reference_rows()))
    return d / "refs.jsonl"


@pytest.fixture(scope="module")
def matcher(refs_file, tmp_path_factory):
    cfg = match.load_config(ROOT / "configs/match.yaml", ["index.workers=1"])
    m = match.Matcher(cfg, tmp_path_factory.mktemp("index") / "idx")
    counts = m.add_references([str(refs_file)])
    assert counts["added"] == len(ARTICLES) + 13 and len(m) == len(ARTICLES) + 13
    yield m
    m.close()


def check_offsets(rec, text, refs):
    for cand in rec["candidates"]:
        ref = refs[cand["reference"]]
        for p in cand["alignment"]:
            assert 0 <= p["input_start"] < p["input_end"] <= len(text)
            assert 0 <= p["reference_start"] < p["reference_end"] <= len(ref)
            for s in p["substitutions"] + p["other_edits"]:
                assert text[s["input_start"]:s["input_end"]] == s["spun"]
                assert ref[s["original_start"]:s["original_end"]] == s["original"]
                assert p["input_start"] <= s["input_start"] and s["input_end"] <= p["input_end"]


# --- attribution ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spinner", ["thesaurus-low", "thesaurus-mid", "thesaurus-high", "lexicon"])
def test_spun_copies_are_attributed_to_their_source(matcher, spinners, spinner):
    sp = spinners[spinner]
    tried = 0
    for k, (rid, (_, text)) in enumerate(ARTICLES.items()):
        spun = sp.spin(text, seed=100 + k)
        if len(spun.edits) < 3:  # the lexicon only knows a few phrases of some articles
            continue
        tried += 1
        rec = matcher.match(spun.text, f"q-{rid}")
        assert rec["relation"] == "spun_copy", (spinner, rid, spun.rate, rec["candidates"][:1])
        assert rec["source"] == rid
        top = rec["candidates"][0]
        assert top["reference"] == rid and top["relation"] == "spun_copy"
        assert top["similarity"]["copied"] >= (0.7 if spinner == "thesaurus-high" else 0.85)
        assert top["similarity"]["substituted"] > 0
        check_offsets(rec, spun.text, REF_TEXTS)
        # The substitutions found are the spinner's own edits (original phrase -> spun phrase).
        subs = [(s["original_start"], s["original_end"]) for p in top["alignment"] for s in p["substitutions"]]
        recovered = sum(any(a < e.src_end and e.src_start < b for a, b in subs) for e in spun.edits)
        assert recovered >= 0.85 * len(spun.edits), (recovered, len(spun.edits))
        # ... and a substitution is (nearly) always a spinner edit, not unchanged text.
        hit = sum(any(a < e.src_end and e.src_start < b for e in spun.edits) for a, b in subs)
        assert hit >= 0.95 * len(subs)
    assert tried >= (2 if spinner == "lexicon" else len(ARTICLES))


def test_substitutions_show_original_and_spun_phrase_with_offsets():
    orig = "Washington's top diplomat said on Monday that five people had been hurt in the 2004 crash."
    spun = "Washington's best diplomat stated on Monday that 5 people had been harmed in the 2004 crash."
    pairs = align(analyze(spun), analyze(orig), MATCH.align)
    assert len(pairs) == 1 and pairs[0].kind == "spun"
    subs = [(e["original"], e["spun"]) for e in pairs[0].edits if e["swap"]]
    assert subs == [("top", "best"), ("said", "stated"), ("hurt", "harmed")]  # "five" -> "5" is not a swap
    e = pairs[0].edits[0]
    assert orig[e["original_start"]:e["original_end"]] == "top" and spun[e["input_start"]:e["input_end"]] == "best"


def test_human_rewording_is_not_a_swap():
    orig = "Yucaipa owned Dominick's before selling the chain to Safeway in 1998 for $2.5 billion."
    other = "Yucaipa bought Dominick's in 1995 for $693 million and sold it to Safeway for $1.8 billion in 1998."
    pairs = align(analyze(other), analyze(orig), dataclasses.replace(MATCH.align, min_pair_similarity=0.2))
    assert pairs and all(p.kind == "reworded" for p in pairs)


def test_verbatim_copy_wrapped_in_boilerplate(matcher):
    text = ARTICLES["wire-flood"][1]
    page = BOILERPLATE_TOP + text + BOILERPLATE_BOTTOM
    rec = matcher.match(page, "page")
    assert rec["relation"] == "verbatim_copy" and rec["source"] == "wire-flood"
    top = rec["candidates"][0]
    assert top["similarity"]["identical"] == 1.0 and top["similarity"]["copied"] >= 0.95
    check_offsets(rec, page, REF_TEXTS)
    # A spun copy of the same page is not verbatim.
    assert matcher.match(page.replace("heavy rain", "weighty precipitation").replace("elderly", "aged")
                         .replace("promised", "pledged"))["relation"] == "spun_copy"


@pytest.mark.parametrize("spun_paragraphs", [False, True])
def test_partial_copy_two_paragraphs_and_new_text(matcher, spinners, spun_paragraphs):
    src = paragraphs(ARTICLES["wire-chip"][1])
    taken = [src[1], src[3]]
    if spun_paragraphs:
        taken = [spinners["thesaurus-mid"].spin(p, seed=7).text for p in taken]
    new = ("Weather forecasters in Lisbon expect a calm week, with temperatures close to 24C and light winds "
           "along the coast. Tourism officials said hotel bookings had recovered strongly this summer.\n\n"
           "The city council plans to extend the tram network to the western suburbs by 2027, a project "
           "costing about 180 million euros. Work on the first section will begin next year.\n\n"
           "Residents have complained about noise from late-night bars in the old town, and the mayor promised "
           "new rules on opening hours before the end of the month.")
    text = "\n\n".join([paragraphs(new)[0], taken[0], paragraphs(new)[1], taken[1], paragraphs(new)[2]])
    rec = matcher.match(text, "partial")
    assert rec["relation"] == "partial_copy" and rec["source"] == "wire-chip", rec["candidates"][:1]
    top = rec["candidates"][0]
    assert 0.2 <= top["similarity"]["copied"] <= 0.6
    kinds = {p["kind"] for p in top["alignment"]}
    assert kinds <= {"identical", "spun", "reworded"} and ("spun" in kinds) == spun_paragraphs
    check_offsets(rec, text, REF_TEXTS)


def test_passages_find_the_source_of_a_partial_copy_the_whole_text_points_away_from(refs_file, tmp_path):
    """Two paragraphs of the chip story inside a rewrite of the rates story: by the whole text the rates
    story is the best candidate; only passage retrieval (immutables and 3-grams of a few sentences)
    brings the chip story up for verification when a single whole-text candidate is verified."""
    chip = paragraphs(ARTICLES["wire-chip"][1])
    text = "\n\n".join([*paragraphs(SAME_STORY["other-rates"]), chip[2], chip[3]])
    found = {}
    for passages in (0, 2):
        cfg = match.load_config(ROOT / "configs/match.yaml",
                                ["index.workers=1", "retrieval.candidates=1", f"retrieval.passage_candidates={passages}"])
        with match.Matcher(cfg, tmp_path / "idx") as m:
            if not len(m):
                m.add_references([str(refs_file)])
            rec = m.match(text)
            found[passages] = {c["reference"]: c["relation"] for c in rec["candidates"]}
    assert "wire-chip" not in found[0] and found[0].get("wire-rates") == "independent"
    assert found[2].get("wire-chip") == "partial_copy"


@pytest.mark.parametrize("other", sorted(SAME_STORY))
def test_same_story_in_own_words_is_not_a_copy(matcher, other):
    rec = matcher.match(SAME_STORY[other], other)
    assert rec["relation"] in ("independent", "no_match"), rec["candidates"][:1]
    assert rec["source"] is None
    # It is found as the same story (shared names and numbers) but not as a copy.
    assert all(c["relation"] == "independent" for c in rec["candidates"])


def test_mrpc_style_pairs_from_other_outlets_are_not_spun_copies(matcher):
    rec = matcher.match("\n\n".join(b for _, b in MRPC_STYLE), "mrpc")
    assert rec["relation"] in ("independent", "no_match"), rec["candidates"][:1]
    # The same sentences spun by a machine are.
    spun = "\n\n".join(a.replace("said", "stated").replace("new", "novel").replace("good", "great")
                       .replace("sharp", "acute").replace("large", "sizable").replace("open", "unlock")
                       for a, _ in MRPC_STYLE)
    rec = matcher.match(spun, "mrpc-spun")
    assert rec["relation"] == "spun_copy" and rec["source"] == "fixture-mrpc"


def test_unrelated_article_is_no_match(matcher):
    text = ("A rare species of orchid has been found growing on a roundabout in Swindon, delighting botanists. "
            "Volunteers from the Wiltshire Wildlife Trust counted 43 flowering spikes in June.\n\n"
            "The plant, which usually grows on chalk grassland, is thought to have spread from seeds carried by "
            "passing lorries. The council has agreed to delay mowing until the autumn.")
    rec = matcher.match(text, "orchid")
    assert rec["relation"] == "no_match" and rec["candidates"] == [] and rec["source"] is None


# --- the index -----------------------------------------------------------------------------------

def test_adding_references_to_an_existing_index_finds_them(refs_file, spinners, tmp_path):
    cfg = match.load_config(ROOT / "configs/match.yaml", ["index.workers=1"])
    idx = tmp_path / "idx"
    first = {k: v for k, v in list(ARTICLES.items())[:3]}
    later = {k: v for k, v in list(ARTICLES.items())[3:]}
    (tmp_path / "a.jsonl").write_text(jl({"id": k, "title": t, "text": x} for k, (t, x) in first.items()))
    (tmp_path / "dir").mkdir()
    for k, (_, x) in later.items():
        (tmp_path / "dir" / f"{k}.txt").write_text(x)
    with match.Matcher(cfg, idx) as m:
        assert m.add_references([str(tmp_path / "a.jsonl")])["added"] == 3
        q = spinners["thesaurus-mid"].spin(ARTICLES["wire-final"][1], seed=3).text
        assert m.match(q)["relation"] in ("no_match", "independent") and m.match(q)["source"] is None
    segments_before = json.loads((idx / "manifest.json").read_text())["segments"]
    # A new process opens the index from disk and adds a directory of references: existing ones untouched.
    with match.Matcher(cfg, idx) as m:
        assert len(m) == 3
        counts = m.add_references([str(tmp_path / "a.jsonl"), str(tmp_path / "dir")])
        assert counts["added"] == len(later) and counts["unchanged_inputs"] == 1 and len(m) == len(ARTICLES)
        rec = m.match(q)
        assert rec["relation"] == "spun_copy" and rec["source"] == "wire-final.txt"
        old = m.match(spinners["thesaurus-mid"].spin(ARTICLES["wire-rates"][1], seed=3).text)
        assert old["source"] == "wire-rates"
    manifest = json.loads((idx / "manifest.json").read_text())
    assert manifest["segments"][: len(segments_before)] == segments_before and len(manifest["segments"]) == 2
    # Re-adding a changed file adds only its new ids.
    (tmp_path / "a.jsonl").write_text((tmp_path / "a.jsonl").read_text()
                                      + jl([{"id": "extra", "text": SAME_STORY["other-rates"]}]))
    with match.Matcher(cfg, idx) as m:
        counts = m.add_references([str(tmp_path / "a.jsonl")])
        assert counts["added"] == 1 and counts["existing"] == 3 and len(m) == len(ARTICLES) + 1
        assert m.match(SAME_STORY["other-rates"])["source"] == "extra"


def test_index_heals_rows_stored_without_features_and_rejects_other_settings(tmp_path):
    idx = tmp_path / "idx"
    ri = ReferenceIndex(idx)
    ri.add([match.Record(id=k, text=x) for k, (_, x) in list(ARTICLES.items())[:2]])
    ri.close()
    # A crash after the rows were stored but before their segment was written.
    db = sqlite3.connect(idx / "refs.sqlite")
    with db:
        db.execute("INSERT INTO refs (id, title, text) VALUES (?, ?, ?)", ("late", None, ARTICLES["wire-film"][1]))
    db.close()
    ri = ReferenceIndex(idx)
    assert len(ri) == 3
    found = ri.search(ri.featurizer.query_features(analyze(ARTICLES["wire-film"][1])), best(1))
    rid, _, text, spans = ri.fetch([found[0].row])[0]
    assert rid == "late" and text[spans[0][0]:spans[0][1]].startswith("The Venice film festival opened")
    ri.close()
    with pytest.raises(IndexStateError, match="other feature settings"):
        ReferenceIndex(idx, dataclasses.replace(MATCH.features, vocabulary="none"))


# A writer process: it loads its rows, says "ready", waits on stdin for the test to release every writer at
# once (a barrier, not a sleep), then opens the index (which has upkeep due) and adds its rows in small batches.
WRITER = """
import json, sys
from inference.io.inputs import Record
from inference.match import load_config
from inference.matching.index import ReferenceIndex
directory, rows_file = sys.argv[1], sys.argv[2]
rows = [json.loads(line) for line in open(rows_file)]
print("ready", flush=True)
sys.stdin.readline()
index = ReferenceIndex(directory, cfg=load_config(None, ["index.max_segments=2", "index.workers=1"]).index)
for i in range(0, len(rows), 3):
    index.add([Record(id=r["id"], text=r["text"]) for r in rows[i:i + 3]])
index.close()
"""


def many_references(n: int) -> list[dict]:
    """`n` distinct references: the fixture ones, then paragraph triples in other orders."""
    rows = reference_rows()
    k = 0
    while len(rows) < n:
        rows.append({"id": f"combo-{k:02d}", "text": "\n\n".join(PARAGRAPHS[(k + j * 5) % 12] for j in range(3))
                     + f"\n\nReport number {k + 100}."})
        k += 1
    return rows[:n]


def test_processes_opening_and_adding_at_once_keep_every_reference_once(tmp_path):
    import subprocess
    import sys

    rows = many_references(36)
    idx = tmp_path / "idx"
    # An index with upkeep due on open: more segments than the writers' max_segments, and rows a crashed
    # writer stored without features.
    ri = ReferenceIndex(idx, cfg=dataclasses.replace(MATCH.index, workers=1))
    for i in (30, 32, 34):  # a segment per add
        ri.add([match.Record(id=r["id"], text=r["text"]) for r in rows[i:i + 2]])
    ri.close()
    assert len(json.loads((idx / "manifest.json").read_text())["segments"]) == 3
    db = sqlite3.connect(idx / "refs.sqlite")
    with db:
        db.execute("INSERT INTO refs (id, title, text) VALUES (?, ?, ?)", ("late", None, ARTICLES["wire-film"][1]))
    db.close()
    files = []
    for name, part in (("a", rows[:20]), ("b", rows[10:30])):  # ten ids in common
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text(jl(part))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(idx), str(f)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for f in files]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            p.kill()
    db = sqlite3.connect(idx / "refs.sqlite")
    stored = dict(db.execute("SELECT id, num FROM refs"))
    db.close()
    assert set(stored) == {r["id"] for r in rows} | {"late"}
    manifest = json.loads((idx / "manifest.json").read_text())
    indexed = np.concatenate([np.load(idx / "segments" / name)["rows"] for name in manifest["segments"]])
    assert sorted(indexed.tolist()) == sorted(stored.values())  # every stored row in exactly one segment
    assert manifest["indexed_upto"] == max(stored.values()) and len(manifest["segments"]) <= 2
    assert sorted(p.name for p in (idx / "segments").iterdir()) == sorted(manifest["segments"])
    assert not list(idx.rglob("*.tmp"))
    ri = ReferenceIndex(idx)
    for rid in ("wire-film", "wire-rates", "combo-03", "late"):
        text = ARTICLES["wire-film"][1] if rid == "late" else next(r["text"] for r in rows if r["id"] == rid)
        found = ri.search(ri.featurizer.query_features(analyze(text)), best(2))
        assert ri.fetch([found[0].row])[0][0] in ({"wire-film", "late"} if rid in ("wire-film", "late") else {rid})
    ri.close()


def test_opening_creates_nothing_and_rebuild_refuses_what_is_not_an_index(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(PARAGRAPHS[0])
    typo = tmp_path / "no-such-index"
    argv = ["--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o.jsonl"), "--quiet"]
    assert match.main(argv + ["--index", str(typo)]) == 2
    assert "no references indexed" in capsys.readouterr().err and not typo.exists()
    ReferenceIndex(typo).close()  # opening for reading creates nothing either
    assert not typo.exists()
    # A directory that is not an index: --rebuild deletes nothing in it, and adding does not turn it into one.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("keep me")
    (docs / "manifest.json").write_text('{"name": "some web app"}')
    for extra in (["--rebuild"], ["--references", str(tmp_path / "a.txt")]):
        assert match.main(argv + ["--index", str(docs)] + extra) == 2
        assert "not an unspin reference index" in capsys.readouterr().err
    assert sorted(p.name for p in docs.iterdir()) == ["manifest.json", "notes.txt"]
    # A real index is rebuilt: its own files go, and it is built again from the references given.
    idx = tmp_path / "idx"
    refs = tmp_path / "refs.jsonl"
    refs.write_text(jl(reference_rows()[:3]))
    assert match.main(["--references", str(refs), "--index", str(idx), "--quiet"]) == 0
    assert match.main(argv + ["--index", str(idx), "--rebuild", "--references", str(refs)]) == 0
    assert "3 added" in capsys.readouterr().err and len(ReferenceIndex(idx)) == 3


def test_config_rejects_unknown_keys():
    from data.configfile import ConfigError

    with pytest.raises(ConfigError, match="retrieval.candidatez"):
        match.load_config(ROOT / "configs/match.yaml", ["retrieval.candidatez=3"])


# --- the batch command ---------------------------------------------------------------------------

def test_command_one_record_per_input_with_bad_inputs(refs_file, spinners, tmp_path, capsys):
    refs_dir = tmp_path / "refs"
    refs_dir.mkdir()
    for k, (_, x) in ARTICLES.items():
        (refs_dir / f"{k}.txt").write_text(x)
    (refs_dir / "broken.txt").write_bytes(b"\xff\xfe bad bytes \x00\x01")
    spun = spinners["thesaurus-high"].spin(ARTICLES["wire-homes"][1], seed=1).text
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text(spun)
    (d / "b.html").write_text("<html><head><title>T</title></head><body><nav>Home | News | Sport</nav>"
                              + "".join(f"<p>{p}</p>" for p in paragraphs(ARTICLES["wire-film"][1])) + "</body></html>")
    (d / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me is served on the terrace today.".encode("latin-1"))
    (d / "empty.txt").write_text("  \n")
    lines = [json.dumps({"id": "j1", "text": SAME_STORY["other-final"]}), "{broken json",
             json.dumps({"text": "no id"}), json.dumps({"id": "j4", "text": ""}), json.dumps({"id": "j5", "text": 7})]
    (tmp_path / "batch.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    idx = tmp_path / "idx"
    argv = ["--references", str(refs_dir), "--input", str(d), str(tmp_path / "batch.jsonl"), str(tmp_path / "nope.txt"),
            "--output", str(out), "--index", str(idx), "--set", "index.workers=2", "--workers", "2", "--quiet"]
    assert match.main(argv) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["id"] for r in recs]
    assert ids[:4] == ["a.txt", "b.html", "empty.txt", "latin1.txt"]
    assert ids[4] == "j1" and ids[5].endswith("batch.jsonl:2") and ids[6].endswith("batch.jsonl:3")
    assert ids[7:] == ["j4", "j5", str(tmp_path / "nope.txt")] and len(recs) == 10
    by = {r["id"]: r for r in recs}
    assert by["a.txt"]["relation"] == "spun_copy" and by["a.txt"]["source"] == "wire-homes.txt"
    assert by["b.html"]["relation"] == "verbatim_copy" and by["b.html"]["source"] == "wire-film.txt"
    assert by["j1"]["relation"] in ("independent", "no_match")
    errors = {r["id"]: r["error"] for r in recs if r["error"]}
    assert len(errors) == 7 and "UTF-8" in errors["latin1.txt"] and errors["empty.txt"] == "empty text"
    for r in recs:
        assert set(r) == {"id", "relation", "source", "candidates", "error"}
        assert (r["error"] is None) == (r["relation"] is not None)
    err = capsys.readouterr().err
    assert "6 added" in err and "1 bad records" in err and "10 records" in err
    # Resume: nothing left to do; the unchanged reference directory is not re-read.
    assert match.main(argv + ["--resume"]) == 0
    assert len(out.read_text().splitlines()) == 10
    assert "1 unchanged inputs skipped" in capsys.readouterr().err


def test_command_cannot_run_exits_non_zero(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(PARAGRAPHS[0])
    assert match.main(["--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o.csv"),
                       "--index", str(tmp_path / "idx")]) == 2
    assert match.main(["--input", str(tmp_path / "a.txt"), "--output", str(tmp_path / "o.jsonl"),
                       "--index", str(tmp_path / "empty-idx")]) == 2
    assert "no references indexed" in capsys.readouterr().err
    assert match.main(["--references", str(tmp_path), "--set", "align.bogus=1", "--index", str(tmp_path / "i")]) == 2
    assert "align.bogus" in capsys.readouterr().err
    assert not (tmp_path / "idx").exists() and not (tmp_path / "empty-idx").exists()


# --- regressions ---------------------------------------------------------------------------------

def test_failed_add_leaves_no_features_behind(tmp_path):
    """A batch whose insert fails is rolled back (its row numbers are reused): its features must not join
    a segment, or the next reference stored at that row would be found for the failed one's text."""
    arts = [x for _, x in ARTICLES.values()]
    ri = ReferenceIndex(tmp_path / "idx")
    with pytest.raises(UnicodeEncodeError):  # SQLite cannot store a lone surrogate; the features could be taken
        ri.add([match.Record(id="x", text=arts[0]), match.Record(id="bad", text=arts[1] + " \ud800")])
    assert len(ri) == 0
    assert ri.add([match.Record(id="c", text=arts[2]), match.Record(id="x", text=arts[0])])["added"] == 2
    ri.close()
    ri = ReferenceIndex(tmp_path / "idx")
    assert len(ri) == 2
    for rid, text in [("x", arts[0]), ("c", arts[2])]:
        found = ri.search(ri.featurizer.query_features(analyze(text)), best(1))
        assert ri.fetch([found[0].row])[0][0] == rid and found[0].words == 1.0
    ri.close()


def test_add_texts_checks_texts_as_inputs_are_checked(tmp_path):
    with match.Matcher(match.load_config(ROOT / "configs/match.yaml", ["index.workers=1"]), tmp_path / "i") as m:
        counts = m.add_texts([("empty", "  "), ("bad", "caf\udce9"), ("ok", ARTICLES["wire-film"][1])])
        assert counts == {"added": 1, "errors:empty text": 1, "errors:not UTF-8 text": 1} and len(m) == 1


def test_alignment_does_not_depend_on_the_hash_seed(tmp_path):
    """Two reference sentences share as many words with the input sentence: the same one is chosen in
    every process (set iteration order, hence Counter order, changes with PYTHONHASHSEED)."""
    import subprocess
    import sys

    code = ("from inference.matching.align import align, analyze\nfrom inference.match import load_config\n"
            "ref = 'Farmers harvest apples early. Bakers sell bread late.'\n"
            "print([(p.q, p.r) for p in align(analyze('Farmers harvest bread late.', False), analyze(ref, False),"
            " load_config().align)])")
    got = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(6)}
    assert got == {"[(0, 0)]\n"}


def test_reference_directory_with_a_dangling_link_and_a_raised_size_limit(tmp_path, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    for k in ("wire-film", "wire-homes"):
        (refs / f"{k}.txt").write_text(ARTICLES[k][1])
    (refs / "gone.txt").symlink_to(tmp_path / "nowhere.txt")  # skipped by the reader: must not sink the run
    big = ARTICLES["wire-rates"][1] + "\n\n" + ARTICLES["wire-flood"][1]
    (refs / "big.txt").write_text(big)
    argv = ["--references", str(refs), "--index", str(tmp_path / "idx"), "--quiet"]
    assert match.main(argv + ["--set", f"max_bytes={len(big) - 1}"]) == 0
    assert "2 added, 0 already indexed, 1 bad records" in capsys.readouterr().err
    # The same directory with a limit that now admits big.txt is read again, not skipped as unchanged.
    assert match.main(argv + ["--set", f"max_bytes={len(big)}"]) == 0
    assert "1 added, 2 already indexed, 0 bad records, 0 unchanged inputs skipped" in capsys.readouterr().err
    assert match.main(argv + ["--set", f"max_bytes={len(big)}"]) == 0
    assert "1 unchanged inputs skipped; 3 indexed" in capsys.readouterr().err
