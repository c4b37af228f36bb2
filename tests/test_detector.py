"""Suggestions, the known-phrase signal, and what a registered detector explains."""
import numpy as np
import pytest

from inference.model.suggest import Suggester
from tests.conftest import ROOT


def test_suggester_reverses_swaps_and_ranks_by_neighbouring_words():
    s = Suggester(reverse={"best": ["finest", "top"], "stated": ["said", "declared"], "12 months": ["year"],
                           "counterfeit consciousness": ["artificial intelligence"], "shut": ["close", "closed"]},
                  unigram={"top": 50, "finest": 60, "said": 500, "declared": 20, "year": 300, "close": 40},
                  bigram={"top diplomat": 30, "close ties": 12, "a year": 90}, neighbour_weight=1.0)
    text = "Washington's best diplomat stated that a 12 months of shut ties bred counterfeit consciousness."
    span = lambda phrase: (text.index(phrase), text.index(phrase) + len(phrase))
    assert s.suggest(text, *span("best diplomat stated")) == "top diplomat said"  # neighbours beat frequency
    assert s.suggest(text, *span("12 months")) == "year"
    assert s.suggest(text, *span("shut")) == "close"
    assert s.suggest(text, *span("counterfeit consciousness")) == "artificial intelligence"
    assert s.suggest(text, *span("bred")) is None  # nothing known: no suggestion


def test_suggester_handles_crude_inflection_and_round_trips(tmp_path):
    s = Suggester({"stock": ["share"]}, {"share": 5}, {}, neighbour_weight=1.0)
    assert s.suggest("He stocks the border.", 3, 9) == "shares"
    back = Suggester.load(s.save(tmp_path / "s.json.gz"))
    assert back.reverse == s.reverse and back.suggest("He stocks it.", 3, 9) == "shares"


def test_tables_from_fixture_corpus(corpus):
    from data.dictionaries import load_tortured
    from train.suggestions import build_suggester, known_phrases

    tables = {"lexicon": load_tortured(corpus / "lexicons/tortured_phrases.tsv", set(), False),
              "moby": {"big": ["enormous", "large"], "flurb": ["grand"]}}
    originals = ["Big data helps. We like big data. Big data is here.", "Data mining finds patterns."]
    s = build_suggester(tables, ["moby", "lexicon"], originals, min_bigram=1, neighbour_weight=1.0)
    assert "artificial intelligence" in s.candidates("counterfeit consciousness")
    assert s.candidates("enormous") == ["big"] and s.candidates("grand") == []  # "flurb" is no word of the originals
    assert s.unigram["data"] == 4 and s.bigram["big data"] == 3
    # a model that must not know the lexicon family gets none of its reversals
    assert build_suggester(tables, ["moby"], originals, 1, 1.0).candidates("counterfeit consciousness") == []
    # "enormous information" stays; a tortured form that clean text uses often is dropped
    phrases = known_phrases(tables, originals + ["information mining is common here: information mining."] * 2,
                            min_words=2, max_clean_hits=1)
    assert "enormous information" in phrases and "counterfeit consciousness" in phrases
    assert "information mining" not in phrases


@pytest.fixture(scope="module")
def detector(smoke_run):
    from inference import Detector

    return Detector.load("models:/unspin@champion")


def test_known_tortured_phrase_is_flagged_with_its_original(detector, monkeypatch):
    text = "Researchers said counterfeit consciousness could help doctors read medical images faster."
    monkeypatch.setattr(detector, "show_spans", "all")  # the smoke model's label is not what this checks
    with detector.using(mode="fast"):  # the tagger's word probabilities, with the lexicon's hits
        rec = detector.score(text)
    span = next(s for s in rec["spans"] if "counterfeit consciousness" in s["text"])
    assert span["score"] >= 0.99 and "artificial intelligence" in span["suggestion"]


def test_detector_round_trips_through_a_directory(detector, tmp_path):
    from inference import Detector

    text = "Officials expect the agreement to open the border to commerce and to reinforce financial strengthen."
    again = Detector.load(detector.save(tmp_path / "det"))
    assert again.score(text) == detector.score(text)


def test_shipped_model_scores_at_its_calibrated_precision_and_saves_full_weights(detector, tmp_path):
    import torch

    from inference import Detector

    assert detector.tagger_settings["quantize"] and detector.tagger.quantized  # smoke config: int8
    full = Detector.load(detector.save(tmp_path / "det"), quantize=False, mode="fast")
    assert not full.tagger.quantized and isinstance(full.tagger.model.classifier, torch.nn.Linear)
    text = "Washington's best diplomat stated the overseas ministers met a 12 months in the past."
    # the tagger's word probabilities (a text's score may sit at 0 in both, far below the threshold)
    [a], [b] = detector.tagger.word_probs([text]), full.tagger.word_probs([text])
    assert len(a) == len(b) and (a != b).any() and abs(a - b).max() < 0.1  # same weights, two precisions


def test_a_text_scores_the_same_alone_and_in_any_batch(detector, monkeypatch):
    """int8 models scale activations per call: the service, the worker, the batch command and Spark batch
    texts differently, and none of that may change a text's score."""
    text = ("Washington's best diplomat stated the overseas ministers met a 12 months in the past. "
            "The talks, which ran late into the night, ended with no agreement on trade.")
    others = ["Shares fell.", "A " + "very long sentence about the markets and the weather " * 12 + "ended."]
    assert detector.tagger.quantized and detector.reader is not None and detector.mode == "thorough"
    read = detector.stats["read_words"]
    alone = detector.score(text)
    words = sum(len(s.words) for s in detector.analyse([text])[0].sentences)
    assert detector.stats["read_words"] == read + words  # the language model read every word
    assert alone["read"] == 1.0
    assert detector.score([others[1], text, others[0]], ids=["x", 0, "y"])[1] == alone
    probs = detector.tagger.word_probs([text, *others])[0]
    assert np.array_equal(probs, detector.tagger.word_probs([text])[0])


def test_zero_shot_score_counts_the_words_a_swap_upsets_after_it():
    """"counterfeit consciousness": the first word's best alternative is likelier (log-ratio 2), and the word after
    it is surprising (5 nats against a median of 2); the weight says how much the second counts."""
    from inference.model.detector import Sentence, zero_shot

    s = Sentence(0, 40, words=[(0, 1)] * 4)
    # per word: [log-ratio of the best alternative, surprisal, has alternatives]
    s.prices = np.array([[0.0, 2.0, 1.0], [2.0, 2.0, 1.0], [0.0, 5.0, 0.0], [-1.0, 1.0, 1.0]])
    assert zero_shot([s], 0.0) == pytest.approx((0 + 2 + 0) / 3)  # the left context alone; negatives count 0
    assert zero_shot([s], 0.5) == pytest.approx((0 + (2 + 0.5 * 3) + 0) / 3)  # the 2nd word upsets the 3rd
    last = Sentence(0, 10, words=[(0, 1)])
    last.prices = np.array([[1.0, 9.0, 1.0]])  # a sentence's last word has no next word
    assert zero_shot([last], 0.5) == pytest.approx(1.0)
    assert zero_shot([Sentence(0, 1)], 0.5) == 0.0  # nothing read


def test_hashed_ngrams_are_stable_across_processes_and_batches(tmp_path):
    import pickle
    import subprocess
    import sys

    import numpy as np

    from inference.model.ngrams import HashedTfidf

    texts = ["The minister said talks would resume.", "Shares fell 3% on Monday.", "The minister said so."]
    f = HashedTfidf((1, 2), (2, 5), hash_bits=16, min_df=1).fit(texts)
    together = f.transform(texts).toarray()
    alone = np.vstack([f.transform([t]).toarray() for t in texts])
    assert np.allclose(together, alone)  # no n-gram straddles two texts
    assert np.allclose(np.linalg.norm(together[:, :1 << 15], axis=1), 1)  # word block L2-normalised
    assert HashedTfidf((1, 2), (2, 5), hash_bits=16, min_df=2).fit(texts).transform(texts[1:2]).nnz < f.transform(texts[1:2]).nnz
    (tmp_path / "f.pkl").write_bytes(pickle.dumps(f))
    code = (f"import pickle,sys; f=pickle.load(open({str(tmp_path / 'f.pkl')!r},'rb'));"
            f"sys.stdout.write(repr(f.transform({texts!r}).sum(axis=0).nonzero()[1].tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "7", "PYTHONPATH": str(ROOT)}).stdout
    assert eval(out) == together.sum(axis=0).nonzero()[0].tolist()


def test_a_score_is_its_length_bands_curve_of_its_mode_raw_score(detector, tmp_path):
    from inference import Detector

    short = "Washington's best diplomat stated the overseas ministers met a 12 months in the past."
    long = " ".join(f"Report {i} said the council met on Monday to discuss the budget and the new school."
                    for i in range(20))
    det = Detector.load(detector.save(tmp_path / "a"))
    analyses = det.analyse([short, long])
    assert [det.length_band(a) for a in analyses] == ["sentence", "article"]
    for mode in ("thorough", "fast"):
        with det.using(mode=mode):
            m = det.modes_[mode]
            raw = m.raw(det.features(analyses, m.reads)[0])
            records = det.score([short, long])
        assert [r["score"] for r in records] == pytest.approx(
            [float(m.bands["sentence"](raw[0])), float(m.bands["article"](raw[1]))], abs=1e-6)
        assert {r["mode"] for r in records} == {mode} and (records[0]["read"] is None) == (mode == "fast")
    with pytest.raises(ValueError, match="mode: expected one of thorough, fast"), det.using(mode="slow"):
        pass
    with det.using(mode="fast"):
        assert Detector.load(det.save(tmp_path / "b"), mode="fast").score([short, long]) == det.score([short, long])


def test_a_clean_label_shows_no_spans_unless_all_are_asked_for(detector, tmp_path):
    from dataclasses import replace

    from inference import Detector

    text = "Washington's best diplomat stated the overseas ministers met a 12 months in the past."
    highlights_every_word = {**detector.modes_, "fast": replace(detector.modes_["fast"], span_threshold=0.0)}
    det = Detector.load(detector.save(tmp_path / "a"), mode="fast", spans="all")
    det.set_modes(highlights_every_word, "fast", det.length_band_words_, det.binding_)
    det.threshold = 1.0  # every text is labelled clean
    everything = det.score(text)
    assert everything["label"] == "clean" and everything["spans"]
    det.show_spans = "flagged"
    assert det.score(text)["spans"] == []
    det.threshold = 0.0
    assert det.score(text)["spans"] == everything["spans"]


def test_a_spun_copy_scores_above_its_clean_original(detector):
    clean = ("Washington's top diplomat said on Monday that foreign ministers had agreed to meet again a year ago, "
             "and that economic support for the region would continue.")
    spun = ("Washington's prime diplomat stated on Monday that overseas ministers had agreed to satisfy once more a "
            "12 months in the past, and that financial help for the area would proceed.")
    a, b = detector.score([clean, spun])
    assert a["score"] < b["score"]


def test_every_domains_clean_validation_texts_are_labelled_clean(detector, smoke_run, tmp_path_factory):
    """Each band's 0.5 sits above the clean validation texts of every domain (the smoke config holds it to
    0.5%, which in slices this small is their loudest text), news or not."""
    from datasets import load_from_disk

    val = load_from_disk(str(tmp_path_factory.getbasetemp() / "smoke-data"))["validation"].to_list()
    domains = ("wikipedia", "science", "reviews", "forum", "fiction_essays", "legal")
    for domain in domains:
        texts = [r["text"] for r in val if r["source"] == domain and r["kind"] == "original"][:3]
        assert texts, domain
        assert [r["label"] for r in detector.score(texts)] == ["clean"] * len(texts), domain
