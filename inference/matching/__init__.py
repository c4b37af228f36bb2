"""Reference matching, behind `python -m inference.match` (inference/match.py, the command):

- `align`: an article as normalised sentences (`analyze`) and the sentence and word alignment of an input
  with a candidate original;
- `relation`: the relation rules (figures of an alignment -> spun_copy / verbatim_copy / partial_copy /
  independent / no_match);
- `features`: what references and inputs are searched by (immutables, word hashes, sampled 3-grams);
- `store`: how the index is stored (segments, the index directory's files, crash-safe writes);
- `feature_workers`: featurising references in worker processes;
- `config`: the settings (configs/match.yaml), read by the index, the matcher and the command;
- `index`: the persisted, appendable ReferenceIndex (open, add, heal, search);
- `matcher`: Matcher (retrieve, align, decide the relation) over an index.
"""
