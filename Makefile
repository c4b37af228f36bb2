# unspin: `make train` and `make test` work on a fresh clone; every target sets up what it needs.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
CONFIG ?= configs/train.yaml
DATA_CONFIG ?= configs/data.yaml
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup data train test test-slow score serve worker bench mlflow-ui clean

setup: $(STAMP)

# torch first (the pinned CPU build: an unpinned resolve pulls CUDA wheels), then everything pinned
# in pyproject.toml. Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$$(grep -o 'torch==[0-9.]*' pyproject.toml)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m data.build --config $(DATA_CONFIG)

# Builds the dataset first when the config's dataset is missing.
train: $(STAMP)
	$(PY) -m train --config $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# make score INPUT="articles/ more.jsonl" OUTPUT=scores.jsonl [ARGS="--baseline --resume"]
score: $(STAMP)
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo 'usage: make score INPUT="FILE|DIR ..." OUTPUT=OUT.jsonl|OUT.csv'; exit 2; }
	$(PY) -m inference.score $(INPUT) --output $(OUTPUT) $(ARGS)

# Speed figures (prints them; nothing is asserted). Needs a trained model: `make train` first.
bench: $(STAMP)
	$(PY) bench/bench_score.py

mlflow-ui: $(STAMP)
	$(PY) -m mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}

clean:
	rm -rf data/build mlruns mlartifacts artifacts .pytest_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
