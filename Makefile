# The two commands of the README: `make demo` and `make test`; `make check` (lint and types) runs in CI before the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test test-streams check bench clean-local

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[dev,local,status,status-test,ansible,langgraph,vector]"
	touch $@

demo: setup
	$(BIN)/agent-factory local up
	$(BIN)/python -m agent_factory.demo

# The whole suite, then the failover tests once more with the primary streaming into every backup.
test: setup
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-streams

# The continuity, chaos, fail-over and fleet tests with streams on (docs/CONTINUITY.md, "Streams").
test-streams: setup
	AGENT_FACTORY_TEST_STREAMS=1 $(BIN)/pytest tests/continuity tests/fleet tests/core/test_failover.py \
		tests/memory/test_continuity.py

# ruff (rules in pyproject.toml) over the whole tree, mypy over agent_factory/, status_app/ and library/: 0 findings.
check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/run.py

clean-local:
	-$(BIN)/agent-factory local down
	rm -rf var/local .env
