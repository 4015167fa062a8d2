# Everything runs from a virtualenv the Makefile makes itself, so a fresh clone needs only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint unit clean

$(BIN)/hokusai: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/hokusai

## The main job: baseline, improvement, DeltaOne and a verified attestation on an embedded server.
demo: install
	$(BIN)/hokusai demo

## Lint, then every test (PostgreSQL, S3 over HTTP and MLflow servers are started by the tests).
test: lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Only the pure-logic tests: seconds, no services.
unit: install
	$(BIN)/pytest tests/unit

clean:
	rm -rf $(VENV) .hokusai-demo *.egg-info .pytest_cache .ruff_cache
