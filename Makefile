# Two entry points for newcomers and CI: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXAMPLE ?= examples/etl.yaml

.PHONY: run test lint types unit install install-dev system-deps crds clean

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

# The real-API tier's control plane (../shared/k8s/control-plane) and the emulator's TLS need
# openssl and curl; the alert tests need Prometheus, promtool and Alertmanager (Debian's
# prometheus and prometheus-alertmanager packages). A fresh Debian machine may lack them.
# The packages' services are not started (a temporary policy-rc.d): the tests start their own
# on 127.0.0.1.
SYSTEM_TOOLS := openssl curl
PROMETHEUS_TOOLS := promtool prometheus prometheus-alertmanager
PROMETHEUS_PACKAGES := prometheus prometheus-alertmanager
system-deps:
	@missing=$$(for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	for t in $(PROMETHEUS_TOOLS); do \
		command -v $$t >/dev/null || { missing="$$missing $(PROMETHEUS_PACKAGES)"; break; }; \
	done; \
	if [ -n "$$missing" ]; then \
		policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; \
			printf '#!/bin/sh\nexit 101\n' > $$policy; chmod +x $$policy; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $$missing ca-certificates; status=$$?; \
		if [ -n "$$policy" ]; then rm -f $$policy; fi; exit $$status; \
	fi

test: lint types system-deps
	$(BIN)/python -m pytest tests --durations=10

# The models are the one source of the CRDs: both copies (kubectl apply -f crds/, and the
# chart's crds/ that helm installs) are written from them; tests fail on drift of either.
crds: install
	$(BIN)/kopflow crds
	$(BIN)/kopflow crds --output-dir helm/kopflow/crds

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
