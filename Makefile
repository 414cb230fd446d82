# Two commands on a fresh machine: `make demo` runs the whole loop, `make test` runs the tests.
# Both create .venv and install what they need (torch's CPU build first, so that the
# `local` extra's torch range installs nothing more).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install base-model bench-peers clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[local,providers,gateway,data,pii,embeddings,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tuneloop demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Rebuilds the tiny base model shipped in src/tuneloop/assets/base_model: up to 110 minutes of
# training on 2 cores, fewer when the prompt-reading probes pass early. Checkpointed in
# .tuneloop/base-model-build: run it again after a stop and it continues where it was.
base-model: $(STAMP)
	$(BIN)/python scripts/build_base_model.py --out src/tuneloop/assets/base_model --minutes 110

# Peers that the benchmarks run beside tuneloop but that cannot share its environment: LiteLLM's
# proxy (bench/gateway_overhead.py) pins its own versions of openai, fastapi and others.
bench-peers: .venv-peers/.installed

.venv-peers/.installed:
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q --upgrade pip
	.venv-peers/bin/python -m pip install -q "litellm[proxy]"
	touch .venv-peers/.installed

clean:
	rm -rf $(VENV) .venv-peers .tuneloop .pytest_cache .ruff_cache
