# attnlab — `make train` and `make test` are all a fresh clone needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
TB_HOST ?= 127.0.0.1
TB_PORT ?= 6006

.DEFAULT_GOAL := help
.PHONY: help install data train test lint bench tensorboard clean distclean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)
	@echo "installed; run 'source .venv/bin/activate' so that python and attnlab are this project's"

install: $(STAMP)  ## create .venv and install the pinned dependencies (torch 2.13.0)

data: $(STAMP)  ## fetch and prepare the default corpus (Shakespeare) into data/shakespeare/
	$(PY) -m attnlab.data.corpus shakespeare --data-dir data

train: data  ## train the default model (extra Hydra overrides: make train ARGS="model.num_heads=8")
	$(PY) train.py $(ARGS)

test: $(STAMP)  ## run the test suite, one worker per core (quick loop, under a minute: make test ARGS="-m 'not slow'")
	$(PY) -m pytest -q -n auto tests $(ARGS)

lint: $(STAMP)  ## ruff: lint and format check (ruff format . fixes the format)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: data  ## measure: train step (Lightning vs a hand loop, compile), attention, data, 90-s quality, generation, GPU, head scores, hook points, encoder–decoder -> docs/benchmarks.md, bench/results.json
	$(PY) -m bench.run $(ARGS)

tensorboard: $(STAMP)  ## serve every run under outputs/ on http://localhost:6006 (TB_HOST=0.0.0.0 to share)
	$(PY) -m tensorboard.main --logdir outputs --host $(TB_HOST) --port $(TB_PORT)

clean:  ## remove the caches: data/cache (token ids), __pycache__, .pytest_cache, .ruff_cache (keeps .venv, outputs/ and the corpus)
	rm -rf data/cache .pytest_cache .ruff_cache
	find src tests bench -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean  ## remove all that make made: the caches, .venv, data/shakespeare/ and data/repeats/ (never outputs/ or exports/, your runs)
	rm -rf $(VENV) src/attnlab.egg-info data/shakespeare data/repeats
