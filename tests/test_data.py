import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from data import build as builder
from data.configfile import ConfigError
from data.corpora import MissingCorpus
from data.spinners import FAMILIES, DictionarySpinner, Resources, apply_edits, make_spinners, word_labels
from data.text import sentences, words
from tests.conftest import CLEAN_DOMAINS, PARAGRAPHS, ROOT


@pytest.fixture(scope="module")
def spinners(corpus):
    """Every family, built over the fixture corpus (its word counts stand in for clean news; its vocabulary is
    small, so only its ten commonest words count as the function words the families leave alone)."""
    cfg = builder.load_config(ROOT / "configs/data.yaml", [
        "spinners.frequency.min_count=1", "spinners.lm.min_count=1", "spinners.wordnet.skip_common=10",
        "spinners.frequency.skip_common=10", "spinners.lm.skip_common=10"])
    counts = builder.word_counts(PARAGRAPHS * 3)
    return make_spinners(cfg.spinners, Resources(corpus / "lexicons/tortured_phrases.tsv", counts))


@pytest.mark.parametrize("name", ["moby", "wordnet", "frequency", "lm"])
def test_spinners_are_deterministic_under_a_seed(spinners, name):
    s = spinners[name]
    text = " ".join(PARAGRAPHS[:4])
    assert s.spin(text, 7) == s.spin(text, 7)
    outputs = {s.spin(text, seed).text for seed in range(6)}
    assert len(outputs) > 1 and text not in outputs


@pytest.mark.parametrize("name", list(FAMILIES))
def test_edits_rebuild_the_spun_text_and_point_at_their_substrings(spinners, name):
    text = "\n\n".join(PARAGRAPHS)
    for seed in range(5):
        spun = spinners[name].spin(text, seed)
        assert spun.edits, f"{name} made no edit"
        assert apply_edits(text, spun.edits) == spun.text
        for e in spun.edits:
            assert text[e.src_start:e.src_end] == e.src
            assert spun.text[e.dst_start:e.dst_end] == e.dst
            assert e.src.lower() != e.dst.lower()
        labels = word_labels(spun.text, spun.edits)
        flagged = {spun.text[s:e] for (s, e), lab in zip(words(spun.text), labels) if lab}
        assert flagged and all(any(w in e.dst for e in spun.edits) for w in flagged)


def test_lexicon_spinner_uses_tortured_forms_and_keeps_case(spinners):
    outputs = {spinners["lexicon"].spin("Artificial intelligence and data mining.", seed).text for seed in range(20)}
    assert "Counterfeit consciousness and information mining." in outputs
    assert all("associate in nursingd" not in o for o in outputs)  # artefact rows are skipped by config


def test_frequency_spinner_rewrites_function_phrases_and_keeps_names(spinners):
    text = "Paris said it was unlikely that the foreign minister would visit a year ago."
    seen = set()
    for seed in range(30):
        spun = spinners["frequency"].spin(text, seed)
        seen |= {e.src for e in spun.edits}
        assert spun.text.startswith("Paris ")
    assert {"was unlikely", "a year ago"} & seen and "Paris" not in seen


def test_families_keep_their_habits(spinners):
    text = "The Foreign Office said five officials would meet in Paris next week to discuss the new rules."
    for name, s in spinners.items():
        for seed in range(20):
            srcs = {e.src for e in s.spin(text, seed).edits}
            if name in ("moby", "frequency", "lm"):  # names inside a sentence are left alone
                assert not srcs & {"Foreign", "Office", "Paris"}, name
            if name != "frequency":  # only the frequency family writes numbers as digits
                assert "five" not in srcs, name


def test_lm_family_picks_candidates_that_fit_the_left_context(spinners):
    lm = spinners["lm"]
    spun = lm.spin_many([(p, 3, None) for p in PARAGRAPHS[:6]])
    edits = [e for s in spun for e in s.edits]
    assert edits and all(e.dst.lower() in lm.neighbours[e.src.lower()] for e in edits)


def test_rate_range_is_respected(spinners):
    base = spinners["moby"]
    for rate in [(1.0, 1.0), (0.2, 0.3)]:
        s = DictionarySpinner("t", base.lookup, base.max_n, rate, base.top_k, True, True)
        for seed in range(5):
            spun = s.spin("\n\n".join(PARAGRAPHS), seed)
            assert rate[0] - 0.05 <= spun.rate <= rate[1] + 0.05


def test_sentence_splitter_keeps_offsets_and_abbreviations():
    text = "Mr. Smith went to Washington. He said: \"It is fine.\"\n\nU.S. shares rose 1.5% on Monday! Really?"
    spans = sentences(text)
    parts = [text[s:e] for s, e in spans]
    assert parts == ["Mr. Smith went to Washington.", "He said: \"It is fine.\"", "U.S. shares rose 1.5% on Monday!",
                     "Really?"]


@pytest.fixture(scope="module")
def built(fixture_data_config):
    cfg = builder.load_config(ROOT / "configs/data.yaml", fixture_data_config)
    card = builder.build(cfg)
    from datasets import load_from_disk

    return cfg, card, load_from_disk(cfg.output_dir)


def test_builder_on_fixture_corpus_writes_splits_and_card(built):
    cfg, card, dd = built
    assert set(dd) == {"train", "validation", "test"}
    total = sum(len(dd[s]) for s in dd)
    assert total == sum(v["rows"] for v in card["counts"].values()) > 100
    on_disk = json.loads((Path(cfg.output_dir) / "card.json").read_text())
    assert on_disk["counts"] == card["counts"]
    assert all(len(v["sha256"]) == 64 for v in card["sources"].values())
    rows = [r for s in dd for r in dd[s]]
    assert {r["level"] for r in rows} == {"sentence", "paragraph", "article"}
    assert set(FAMILIES) | {"human", "none"} == {r["spinner"] for r in rows}
    tables = builder.load_tables(cfg.output_dir)
    assert set(tables) == set(FAMILIES) and all(tables.values())
    assert {"original", "spun", "partial", "paraphrase"} <= {r["kind"] for r in rows}
    for r in rows:
        if r["kind"] != "paraphrase":  # a human paraphrase has no alignment
            assert apply_edits(r["original"], r["edits"]) == r["text"]
        assert len(r["word_labels"]) == len(words(r["text"]))
        assert r["label"] == int(bool(r["edits"]))


def test_bad_rows_are_skipped_and_counted(built):
    _, card, _ = built
    skipped = card["skipped"]
    for reason in ("bbc:empty", "bbc:non_text", "bbc:too_long", "bbc_news.jsonl:malformed"):
        assert skipped.get(reason, 0) >= 1, reason
    for domain in CLEAN_DOMAINS:  # each clean file has a line that is not JSON and a row without its document
        assert skipped.get(f"{domain}.jsonl:malformed") == 1 and skipped.get(f"{domain}:no_id") == 1, domain


def test_clean_domains_reach_every_split_and_are_spun(built):
    _, card, dd = built
    where = defaultdict(set)
    for split in dd:
        for r in dd[split]:
            if r["source"] in CLEAN_DOMAINS:
                where[r["source"], split].add(r["kind"])
                assert r["level"] == "paragraph" and r["doc_id"].startswith(r["source"] + ":")
    for domain in CLEAN_DOMAINS:
        for split in dd:
            assert "original" in where[domain, split], (domain, split)
        assert any("spun" in where[domain, split] for split in dd), domain
    assert card["counts"]["test"]["paragraph/source=legal"] >= 1
    assert any(f.startswith("clean/") for f in card["sources"])


def test_each_domain_keeps_a_document_for_validation_and_test():
    eight_books = builder.split_documents([f"book{i}" for i in range(8)], 13, {"train": 0.8, "validation": 0.1,
                                                                                "test": 0.1})
    assert sorted(eight_books.values()) == ["test"] + ["train"] * 6 + ["validation"]
    many = builder.split_documents([f"doc{i}" for i in range(1000)], 13, {"train": 0.8, "validation": 0.1,
                                                                          "test": 0.1})
    assert sorted(Counter(many.values()).items()) == [("test", 100), ("train", 800), ("validation", 100)]


def test_alternatives_are_wide_and_keyed_by_family(built):
    cfg, card, _ = built
    alternatives = builder.load_alternatives(cfg.output_dir)
    assert set(alternatives) == {"moby", "wordnet"} and card["alternatives"]["moby"] == len(alternatives["moby"])
    for family, table in alternatives.items():
        found = table["help"]
        assert found and "help" not in {a.lower() for a in found} and len(found) == len(set(found)), family
    assert len(alternatives["moby"]["help"]) == cfg.alternatives.moby_keep  # far more than the moby family's 5
    assert "aid" in alternatives["wordnet"]["help"]


def test_no_source_document_in_two_splits(built):
    _, _, dd = built
    where = defaultdict(set)
    for split in dd:
        for r in dd[split]:
            where[r["doc_id"]].add(split)
    assert all(len(s) == 1 for s in where.values())
    # MRPC links MSR sentences 1000 and 1001: they are one source group, so one split.
    msr = {r["id"].split(":")[0]: split for split in dd for r in dd[split] if r["source"] == "msr"}
    if "msr-1000" in msr and "msr-1001" in msr:
        assert msr["msr-1000"] == msr["msr-1001"]


def test_build_is_deterministic(fixture_data_config, tmp_path, built):
    _, _, dd = built
    cfg = builder.load_config(ROOT / "configs/data.yaml", fixture_data_config + [f"output_dir={tmp_path}"])
    rows, *_ = builder.build_rows(cfg, builder.cfglib.data_root(cfg.data_root))
    assert sorted(r["id"] for r in rows["train"]) == sorted(dd["train"]["id"])


def test_unknown_config_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    base = f"extends: {ROOT / 'configs/data.yaml'}\n"  # every other key as configured: only this one is wrong
    bad.write_text(base + "spinners:\n  moby:\n    rat: [0.1, 0.2]\n")
    with pytest.raises(ConfigError, match=r"spinners\.moby\.rat: unknown key"):
        builder.load_config(bad)
    bad.write_text(base + "seed: many\n")
    with pytest.raises(ConfigError, match=r"seed: expected int"):
        builder.load_config(bad)


def test_a_clean_domain_cannot_take_a_news_source_name():
    with pytest.raises(ConfigError, match=r"sources\.clean\.bbc: a news source"):
        builder.load_config(ROOT / "configs/data.yaml", ["sources.clean={bbc: clean/wikipedia.jsonl}"])


def test_missing_corpus_file_names_file_and_setting(corpus, tmp_path, fixture_data_config):
    cfg = builder.load_config(ROOT / "configs/data.yaml",
                              fixture_data_config + ["sources.msr=news/nope.tsv", f"output_dir={tmp_path}"])
    with pytest.raises(MissingCorpus, match=r"news/nope\.tsv.*sources\.msr"):
        builder.build(cfg)


def test_cli_reports_bad_config_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {ROOT / 'configs/data.yaml'}\nsplits: {{train: 0.5, validation: 0.5, tset: 0.0}}\n")
    proc = subprocess.run([builder.sys.executable, "-m", "data.build", "--config", str(bad)], cwd=ROOT,
                          capture_output=True, check=False, text=True)
    assert proc.returncode == 2 and "splits" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("target", ["train", "test"])
def test_make_targets_resolve(target):
    proc = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, check=False, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "python" in proc.stdout


def test_corpus_text_loses_html_entity_debris():
    from data.corpora import clean_text

    raw = "Dell Inc. &lt;DELL.O&gt; said it#39;s out #151; AT&amp;T caf#233; stays; C# and Item #12; stay"
    assert clean_text(raw, 1000) == ("Dell Inc. <DELL.O> said it's out — AT&T café stays; C# and Item #12; stay", None)


def test_re2_classes_mean_what_python_re_means():
    """RE2's \\s and \\w are ASCII-only: data.text spells out Python's Unicode ones for the rules."""
    import re
    import sys

    from data.text import NOT_WORD_CHAR, SPACE, re2_compile

    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    assert re2_compile(SPACE).findall(every) == re.findall(r"\s", every)
    # Python's \w is RE2's letters, digits and _ as of Python's (older) Unicode version.
    non_word = set("".join(re2_compile(NOT_WORD_CHAR + "+").findall(every)))
    assert not non_word & set(re.findall(r"\w", every))


def _reference_sentences(text: str) -> list[tuple[int, int]]:
    """The splitter as first written (backtracking regex, re-splitting the text before each full stop):
    quadratic on hostile text, the meaning `sentences` must keep."""
    import re

    from data.text import ABBREVIATIONS

    spans, start = [], 0
    for m in re.finditer(r"[.!?]+[\"'”’)\]]*(?=\s+|$)|\n\s*\n", text):
        end = m.end()
        if m.group().strip() and m.group()[0] == ".":
            before = text[start:m.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            if last in ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                continue
            following = text[end:end + 3].lstrip()
            if following and following[0].islower():
                continue
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        chunk = text[s:e]
        ls, rs = len(chunk) - len(chunk.lstrip()), len(chunk.rstrip())
        if rs > ls:
            out.append((s + ls, s + rs))
    return out


def test_sentence_splitter_keeps_its_meaning_on_random_text():
    import random

    rng = random.Random(10)
    pieces = [".", "!", "?", '"', "'", "”", ")", "]", " ", "\n", "\t", "\u2028", "\xa0", "\r\n", "\n\n", "Mr", "mr",
              "U.S", "e.g", "a", "A", "J", "word", "Word", "...", "(", "1.5"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        assert sentences(text) == _reference_sentences(text), repr(text)


def test_the_wordnet_copy_nltk_reads_is_gone_when_the_process_ends():
    """NLTK reads WordNet from a staged copy (28 MB); every process that spins or builds makes one."""
    script = ("from data.dictionaries import load_wordnet\n"
              "r = load_wordnet('/usr/share/wordnet')\n"
              "print(r.root, r.synsets('car')[0].lemma_names()[1])")
    proc = subprocess.run([builder.sys.executable, "-c", script], cwd=ROOT, capture_output=True, check=False,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    stage, lemma = proc.stdout.split()
    assert lemma == "auto" and "unspin-wordnet-" in stage and not Path(stage).exists()
