# The two set-up commands are `make demo` and `make test`; both build the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-es test lint unit soak bench bench-quick profile clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/metrics-poller demo

# Optional: setup, validate and once against the simulator and the Elasticsearch test server.
demo-es: $(STAMP)
	$(BIN)/python -m metrics_poller.testing.demo_es

lint: $(STAMP)
	$(BIN)/ruff check metrics_poller tests
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint unit

soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak -s tests

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m tests.benchmarks --quick --report '' --results .bench/quick.json

profile: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	mkdir -p .bench
	$(BIN)/py-spy record --gil -r 100 -f raw -o .bench/profile.txt -- $(BIN)/python -m tests.benchmarks.worker \
		'{"kind":"cycle","subscriptions":3,"accounts_per_region":84,"latency":0}'
	$(BIN)/python -m tests.benchmarks.profile_summary .bench/profile.txt

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
