# cityflow: the two commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-tools test-slow test-fast bench lint install clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cityflow demo

# Tools some tests use from the OS (Debian packages; no engine, no daemon): docker-compose checks
# docker/compose.yaml, chromium opens the exported HTML report headless. Installed when missing
# and this is a root shell with apt-get; otherwise the tests that need them say they are skipped
# and why.
TEST_TOOLS := docker-compose chromium
test-tools:
	@missing=""; for t in $(TEST_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian packages for tests:$$missing"; \
		apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null 2>&1 || true; \
	fi; \
	for t in $(TEST_TOOLS); do command -v $$t >/dev/null 2>&1 || echo "note: $$t is not installed; the tests that need it will be skipped"; done

test: $(STAMP) test-tools
	$(BIN)/python -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/pip install -q -e '.[test,spark]'
	$(BIN)/python -m pytest -m "slow" -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not e2e" -q $(PYTEST_ARGS)

# The peers (Quix Streams, Bytewax) are in the 'bench' extra, so make install/test stay lean.
# The warehouse case's 30-day lake at demo rates is landed once and kept here (bench/warehouse_case.py).
BENCH_LAKE ?= .cityflow/bench-warehouse-lake
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench --warehouse-lake $(BENCH_LAKE) $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/ruff check contracts streams warehouse jobs bench tests
	$(BIN)/mypy contracts streams warehouse jobs --ignore-missing-imports

clean:
	rm -rf $(VENV) lake reports .cityflow warehouse/*.duckdb
