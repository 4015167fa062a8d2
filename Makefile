# Everything runs from a virtualenv the Makefile makes itself, so a fresh clone needs only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint unit tools clean bench

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
test: lint tools
	$(BIN)/pytest

## nginx and promtool, which tests/integration/test_deployment_files.py runs on the deployment
## files: Debian's packages nginx and prometheus, installed only when missing (needs root, as CI
## is). A failed install stops `make test` here, saying so, rather than letting the checks skip.
tools:
	@if { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null && command -v promtool >/dev/null; then \
		exit 0; \
	fi; \
	echo "make tools: installing nginx and promtool (Debian packages nginx, prometheus)"; \
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		nginx prometheus; } || { \
		echo "make tools: could not install nginx and prometheus with apt-get (run as root, or install" \
			"them yourself); the deployment-file tests need them" >&2; \
		exit 1; \
	}

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Only the pure-logic tests: seconds, no services.
unit: install
	$(BIN)/pytest tests/unit

## The benchmarks of docs/benchmarks.md: seed a fresh PostgreSQL database (127.0.0.1:5432, user
## postgres), load `mlflow server --app-name hokusai` and plain `mlflow server` on it, profile, drop it.
## Results in benchmarks/results.{json,md}. Full scale (100k versions) about 5 minutes;
## BENCH_SCALE=small make bench for a quick run (about 2). Profiles need pyinstrument in the venv.
BENCH_SCALE ?= full
bench: install
	$(BIN)/python benchmarks/run.py --scale $(BENCH_SCALE)

clean:
	rm -rf $(VENV) .hokusai-demo *.egg-info .pytest_cache .ruff_cache
