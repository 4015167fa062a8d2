# Everything runs from a virtualenv the Makefile makes itself, so a fresh clone needs only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-quick lint unit tools clean bench

# On a terminal pip shows what it downloads, with progress bars; in a log (CI, a pipe) it stays
# quiet, and the phase lines say what is going on during the minutes of a first install.
PIP_INSTALL = if [ -t 1 ]; then output="--progress-bar on"; else output="--quiet --progress-bar off"; fi; \
	$(BIN)/pip install $$output

$(BIN)/hokusai: setup.py
	@echo "make install: creating the virtualenv $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@echo "make install: upgrading pip in $(VENV)"
	@$(PIP_INSTALL) --upgrade pip
	@echo "make install: installing mlflow-hokusai-plugin and its dependencies into $(VENV)" \
		"(first time: a few minutes)..."
	@$(PIP_INSTALL) -e '.[dev]'
	@touch $@
	@echo "make install: done; $(BIN)/hokusai is installed"

install: $(BIN)/hokusai

## The main job: baseline, improvement, DeltaOne and a verified attestation on an embedded server.
## `make demo DEMO_ARGS=--keep-serving` keeps the UI up; SIGTERM or Ctrl-C stops everything it started.
DEMO_ARGS ?=
demo: install
	$(BIN)/hokusai demo $(DEMO_ARGS)

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

## ruff, and the layer contracts of .importlinter (a lower layer never imports a higher one).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## Every test but those marked slow (a minute or more each): about half the time of `make test`.
test-quick: lint tools
	$(BIN)/pytest -m "not slow"

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
