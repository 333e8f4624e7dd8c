# The two set-up commands are `make demo` and `make test`; both build the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Every install takes its versions from the lock files (`make lock` refreshes them): CI, the image and a
# fresh clone all test and run the same releases.
RUNTIME_LOCK := requirements/runtime.txt
TEST_LOCK := requirements/test.txt

.PHONY: demo demo-es test lint unit soak bench bench-quick profile clean install lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade 'pip>=24,<27'

$(STAMP): $(BIN)/python pyproject.toml $(RUNTIME_LOCK) $(TEST_LOCK)
	$(BIN)/pip install --quiet --quiet -c $(TEST_LOCK) -e '.[test]'
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

# Tests run in parallel, one worker per core (pytest-xdist); `make unit PYTEST_WORKERS=0` runs them in one process.
PYTEST_WORKERS ?= auto
unit: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

test: lint unit

soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak -s tests

bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m tests.benchmarks --quick --report '' --results .bench/quick.json

profile: $(STAMP)
	$(BIN)/pip install --quiet -c $(TEST_LOCK) -e '.[test,bench]'
	mkdir -p .bench
	$(BIN)/py-spy record --gil -r 100 -f raw -o .bench/profile.txt -- $(BIN)/python -m tests.benchmarks.worker \
		'{"kind":"cycle","subscriptions":3,"accounts_per_region":84,"latency":0}'
	$(BIN)/python -m tests.benchmarks.profile_summary .bench/profile.txt

# `make lock` after a change to pyproject.toml's dependencies: both lock files follow it, keeping every
# other pin; `make lock-upgrade` re-resolves everything to the newest releases within pyproject.toml's
# ranges. Both resolve for every platform, the test lock constrained by the runtime one so the two agree;
# then run `make test` and commit the two files.
.PHONY: lock-upgrade
UV_COMPILE = $(BIN)/uv pip compile --quiet $(UV_UPGRADE) --universal --python-version 3.11 \
	--custom-compile-command 'make lock'
lock: $(BIN)/python
	$(BIN)/pip install --quiet --quiet 'uv>=0.5,<1'
	$(UV_COMPILE) pyproject.toml -o $(RUNTIME_LOCK)
	$(UV_COMPILE) pyproject.toml --extra test -c $(RUNTIME_LOCK) -o $(TEST_LOCK)

lock-upgrade:
	$(MAKE) lock UV_UPGRADE=--upgrade

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
