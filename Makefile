# One command to set up and run the pipeline, one to set up and run the tests.
# Needs only Python 3.11 (and make); everything else is installed into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_DATASETS_OFFLINE := 1
# Model loading is offline: hub ids resolve from the local cache only (builtin:tiny needs no hub at all).
# Not HF_HUB_OFFLINE: with it, huggingface_hub's InferenceClient refuses even the local judge server.
export TUNELINE_OFFLINE := 1

.PHONY: setup demo test lint schema bench clean-data

setup: $(VENV)/.installed

# torch goes first, pinned by constraints.txt: an unpinned torch pulls GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[all,dev]"
	touch $@

## demo: the main job — ingest → clean → split → train → evaluate → register on the bundled data, via dvc repro
demo: setup
	dvc repro
	dvc metrics show
	@echo "outputs: data/{ingested,cleaned,split} (reports: */report.json), models/candidate, reports/eval/report.html"
	$(BIN)/tuneline registry show

## test: the whole test suite (what .ci/run calls)
test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

## schema: regenerate params.schema.json from the config model
schema: setup
	$(BIN)/tuneline config schema --out params.schema.json

bench: setup
	$(BIN)/python benchmarks/data_prep.py

clean-data:
	rm -rf data/ingested data/cleaned data/split
