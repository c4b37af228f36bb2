# unspin: `make train` and `make test` work on a fresh clone; every target sets up what it needs.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
CONFIG ?= configs/train.yaml
DATA_CONFIG ?= configs/data.yaml
# MLflow's store unless MLFLOW_TRACKING_URI says otherwise: inference/settings.py's MLFLOW_STORE, written again
# here for the targets that run the mlflow CLI (no Python of ours to read it from)
MLFLOW_STORE := sqlite:///mlflow.db
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup system-deps data train lofo test test-slow score score-spark serve serve-mlflow worker redis match bench mlflow-ui clean

setup: $(STAMP) system-deps

# Debian packages, installed only when missing: redis-server (queue worker and its tests), wordnet-base
# (the WordNet spinner family's databases), openjdk-17-jre-headless (Java for Spark: `make score-spark`),
# chromium and chromium-driver (the HTML views' browser tests).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	test -f /usr/share/wordnet/data.noun || missing="$$missing wordnet-base"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	test -z "$$missing" || (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null)

# torch first (the pinned CPU build: an unpinned resolve pulls CUDA wheels), then everything pinned
# in pyproject.toml. Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$$(grep -o 'torch==[0-9.]*' pyproject.toml)"
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps $$(sed -n 's/^no_deps = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')
	touch $(STAMP)

data: setup
	$(PY) -m data.build --config $(DATA_CONFIG)

# Builds the dataset first when the config's dataset is missing. Trains, evaluates and registers the shipped model.
train: setup
	$(PY) -m train --config $(CONFIG)

# Generalisation: the leave-one-family-out folds (configs/lofo.yaml), in their own MLflow experiment.
lofo: setup
	$(PY) -m train --config configs/lofo.yaml

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# make score INPUT="articles/ more.jsonl" OUTPUT=scores.jsonl [REPORT=report.html] [ARGS="--baseline --resume"]
score: $(STAMP)
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo 'usage: make score INPUT="FILE|DIR ..." OUTPUT=OUT.jsonl|OUT.csv [REPORT=REPORT.html]'; exit 2; }
	$(PY) -m inference.score $(INPUT) --output $(OUTPUT) $(if $(REPORT),--report $(REPORT)) $(ARGS)

# The same records on Apache Spark (embedded local[*] master by default; docs/spark.md).
# make score-spark INPUT="corpus/ more.parquet" OUTPUT=scores.parquet [ARGS="--master local[2] --set partitions=64"]
score-spark: $(STAMP) system-deps
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo 'usage: make score-spark INPUT="FILE|DIR|URI ..." OUTPUT=OUT.jsonl|OUT.parquet'; exit 2; }
	$(PY) -m inference.spark --input $(INPUT) --output $(OUTPUT) $(ARGS)

# HTTP service on 127.0.0.1:8000 (configs/service.yaml + configs/inference.yaml): POST /v1/score,
# /v1/score/batch; docs at /docs. make serve [ARGS="--set http.port=9000 --set quantize=true"]
serve: setup
	$(PY) -m inference.service $(ARGS)

# The registered model under MLflow's own server: POST http://127.0.0.1:5001/invocations.
# --env-manager local runs it with this venv, hence its bin first on PATH. make serve-mlflow [ARGS=...]
serve-mlflow: $(STAMP)
	PATH="$(CURDIR)/.venv/bin:$$PATH" MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-$(MLFLOW_STORE)} \
		mlflow models serve -m models:/unspin@champion --env-manager local -h 127.0.0.1 -p 5001 $(ARGS)

# Redis Streams worker: unspin:articles -> unspin:verdicts (+ unspin:review, unspin:dead); needs Redis
# (`make redis`). make worker [ARGS="--set worker.batch_size=32 --redis-url redis://host:6379/0"]
worker: setup
	$(PY) -m inference.worker $(ARGS)

# Local Redis for `make worker` on 127.0.0.1:6379 (worker.redis_url), data in .redis/, append-only file on
# (configs/redis.conf: a Redis crash loses no acknowledged work); foreground, Ctrl-C stops it.
redis: system-deps
	@mkdir -p .redis
	redis-server configs/redis.conf --dir "$(CURDIR)/.redis" $(ARGS)

# make match REFS=archive/ INPUT=articles/ OUTPUT=matches.jsonl [REPORT=matches.html]
match: $(STAMP)
	@test -n "$(REFS)" -a -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo 'usage: make match REFS=DIR|FILE.jsonl INPUT="FILE|DIR ..." OUTPUT=OUT.jsonl [REPORT=REPORT.html]'; exit 2; }
	$(PY) -m inference.match --references $(REFS) --input $(INPUT) --output $(OUTPUT) $(if $(REPORT),--report $(REPORT)) $(ARGS)

# Speed figures (printed; nothing is asserted). Needs a trained model: `make train` first.
bench: setup
	$(PY) bench/bench_score.py
	$(PY) bench/bench_lm.py
	$(PY) bench/bench_service.py
	$(PY) bench/bench_match.py
	$(PY) bench/bench_hostile.py
	$(PY) bench/bench_report.py
	$(PY) bench/bench_spark.py

mlflow-ui: $(STAMP)
	$(PY) -m mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri $${MLFLOW_TRACKING_URI:-$(MLFLOW_STORE)}

clean:
	rm -rf mlruns mlartifacts artifacts .pytest_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
