# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test bench clean-local

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[dev,local,status,status-test,ansible,langgraph,vector]"
	touch $@

demo: setup
	$(BIN)/agent-factory local up
	$(BIN)/python -m agent_factory.demo

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/run.py

clean-local:
	-$(BIN)/agent-factory local down
	rm -rf var/local .env
