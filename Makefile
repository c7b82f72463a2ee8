# The whole set-up is two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch that lies on disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: demo test test-fast lint format install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Install torch first (pinned) only when the venv has none, then the package.
install: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e .

install-dev: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[dev]'

demo: install
	$(BIN)/lmforge demo

# Lint first: CI runs `make test`, so an unformatted or lint-failing tree fails CI.
test: install-dev lint
	$(BIN)/python -m pytest -m "not gpu"

# The quick tier: no end-to-end runs, no multi-process launches (well under a minute).
test-fast: install-dev
	$(BIN)/python -m pytest -m "not slow and not multiprocess and not gpu"

lint: install-dev
	$(BIN)/ruff check src tests bench examples scripts experiments
	$(BIN)/ruff format --check src tests bench examples scripts experiments

format: install-dev
	$(BIN)/ruff format src tests bench examples scripts experiments
	$(BIN)/ruff check --fix src tests bench examples scripts experiments

clean:
	rm -rf $(VENV) runs .pytest_cache
