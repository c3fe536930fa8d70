# The two commands a new user needs: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup redis demo up test lint bench

setup: $(VENV)/.installed redis

$(VENV)/.installed: pyproject.toml client/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q torch==2.13.0  # the CPU build; before anything that depends on torch
	$(BIN)/pip install -q -e "./client[qiskit,progress,torch,pennylane]" -e ".[dev,demo]"
	touch $@

redis:
	@scripts/ensure-redis

demo: setup
	$(BIN)/qfleet demo

up: setup
	$(BIN)/qfleet up --port 8000 --workers 2

test: setup  # also installs chromium for the browser tests; TESTS=tests/unit runs a part
	@scripts/ensure-chromium
	$(BIN)/python -m pytest -q $(TESTS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && scripts/typecheck

bench: setup
	$(BIN)/python -m qfleet_server.bench.run
