# Two entry points for newcomers and CI: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXAMPLE ?= examples/etl.yaml

.PHONY: run test lint types unit install install-dev crds clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/kopflow run $(EXAMPLE)

lint: install-dev
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests

types: install-dev
	$(BIN)/mypy

test: lint types
	$(BIN)/python -m pytest tests

crds: install
	$(BIN)/kopflow crds

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
