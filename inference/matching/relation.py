"""Relation rules for `inference.match`: an input's aligned pairs with a candidate (inference.matching.align)
become article-level figures (`figures`: shares of copied, spun and reworded words, order) and one relation
(`relation`): spun_copy / verbatim_copy / partial_copy / independent / no_match. A copy needs at least two
copied sentences and a high share of copied (identical or spun) words among the aligned ones: human rewording
of one story (MRPC pairs) passes the per-sentence test now and then, but not sentence after sentence.
"""
from __future__ import annotations

from dataclasses import dataclass

from inference.matching.align import Doc, Pair


# Fields and types only: every value is in the `relation:` section of configs/match.yaml
# (read by data.configfile), so it is written once.
@dataclass
class RelationConfig:
    copy_coverage: float  # input prose words in copied (identical/spun) sentences: full copy
    reference_coverage: float  # ... and reference prose words copied (else some paragraphs taken: partial)
    copy_purity: float  # copied share of the aligned input words, for any copy relation
    verbatim_identical: float  # share of copied input words identical: verbatim rather than spun
    spun_min_swaps: int  # ... and fewer swaps and reworded sentences than this
    min_copy_words: int  # fewer copied words than this is not evidence of copying
    min_copy_sentences: int
    partial_coverage: float  # input prose words in copied sentences: partial copy
    min_order: float  # share of aligned pairs in the reference's order, for a full copy
    independent_retrieval: float  # immutables similarity above which an unaligned candidate is the same story
    independent_aligned: float  # ... or share of input words aligned (reworded) to it


def _monotone(pairs: list[Pair]) -> int:
    """Length of the longest run of pairs in increasing reference order (LIS)."""
    import bisect

    tails: list[int] = []
    for p in pairs:
        k = bisect.bisect_right(tails, p.r)
        if k == len(tails):
            tails.append(p.r)
        else:
            tails[k] = p.r
    return len(tails)


def figures(inp: Doc, ref: Doc, pairs: list[Pair]) -> dict:
    n_in = max(1, inp.prose_words())
    n_ref = max(1, ref.prose_words())
    aligned = sum(inp.sentences[p.q].n for p in pairs)
    copied_pairs = [p for p in pairs if p.kind != "reworded"]
    copied = sum(inp.sentences[p.q].n for p in copied_pairs)
    ref_aligned = sum(ref.sentences[r].n for r in {p.r for p in pairs})
    ref_copied = sum(ref.sentences[r].n for r in {p.r for p in copied_pairs})
    equal_copied = sum(p.equal for p in copied_pairs)
    return {
        "input_aligned": round(aligned / n_in, 4),
        "reference_aligned": round(min(1.0, ref_aligned / n_ref), 4),
        "copied": round(copied / n_in, 4),
        "reference_copied": round(min(1.0, ref_copied / n_ref), 4),
        "copy_purity": round(copied / aligned, 4) if aligned else 0.0,
        "identical": round(sum(p.equal for p in pairs) / aligned, 4) if aligned else 0.0,
        "identical_copied": round(equal_copied / copied, 4) if copied else 0.0,
        "substituted": round(sum(p.substituted for p in pairs) / aligned, 4) if aligned else 0.0,
        "reworded": round(sum(p.reworded for p in pairs) /
                          max(1, aligned + sum(ref.sentences[p.r].n for p in pairs)), 4),
        "order": round(_monotone(pairs) / len(pairs), 4) if pairs else 0.0,
        "word_match": round(sum(p.equal for p in pairs) / n_in, 4),
        "swaps": sum(1 for p in copied_pairs for e in p.edits if e["swap"]),
        "sentences": {"input": len(inp.prose), "reference": len(ref.prose), "aligned": len(pairs),
                      "identical": sum(p.kind == "identical" for p in pairs),
                      "spun": sum(p.kind == "spun" for p in pairs),
                      "reworded": sum(p.kind == "reworded" for p in pairs)},
        "_copied_words": copied,
    }


def relation(fig: dict, retrieval: float, cfg: RelationConfig) -> str:
    sent = fig["sentences"]
    n_copied = sent["identical"] + sent["spun"]
    # One sentence is not evidence of copying: a reporter's "The firm said" for "The company said" looks
    # exactly like a dictionary swap. It takes min_copy_sentences copied sentences.
    copy_evidence = (fig["_copied_words"] >= cfg.min_copy_words and n_copied >= cfg.min_copy_sentences
                     and fig["copy_purity"] >= cfg.copy_purity)
    if (copy_evidence and fig["copied"] >= cfg.copy_coverage and fig["reference_copied"] >= cfg.reference_coverage
            and fig["order"] >= cfg.min_order):
        changes = fig["swaps"] + sent["reworded"]
        verbatim = fig["identical_copied"] >= cfg.verbatim_identical and changes < cfg.spun_min_swaps
        return "verbatim_copy" if verbatim else "spun_copy"
    if copy_evidence and fig["copied"] >= cfg.partial_coverage:
        return "partial_copy"
    if fig["input_aligned"] >= cfg.independent_aligned or retrieval >= cfg.independent_retrieval:
        return "independent"
    return "no_match"
