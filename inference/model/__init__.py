"""The model: what a registered MLflow model ships and runs (train/registry.py's code_paths copy this package,
the package root's __init__ and the data/ modules it imports, nothing else).

`detector` (Detector: text in, score records out), `fitted` (its fitted state, as unspin.json stores it),
`tagger` (the token tagger), `ngrams` (hashed TF-IDF), `prose` (boilerplate rules), `suggest` (likely original
wording), `signals` (the language model's reader), `record` (the score record), `pyfunc` (the MLflow pyfunc
wrapper).
"""
