# Two commands set everything up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# The versions this project is tested with (they install from the local wheel cache here).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: demo test unit lint install system-deps bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/atelier demo

system-deps:
	bash scripts/install-system-deps.sh

# The whole suite: lint, then unit, CLI and integration tests (real redis-server, workers, PostgreSQL).
test: $(VENV)/.installed system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# What needs no Redis, no worker process and no PostgreSQL: the fast loop while editing.
unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit tests/cli -n 2 -m "not postgres and not integration" $(PYTEST_ARGS)

# ruff (lint and format) and the import layers (import-linter contracts in pyproject.toml).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
