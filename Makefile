# Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev lint format docs uv clean

# uv installs from the committed lock file in seconds; get it with pip when missing.
uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

install: uv
	@$(UV) sync --frozen --no-dev --quiet
	@touch $(VENV)/.installed

install-dev: uv
	@$(UV) sync --frozen --quiet

run: install
	@$(BIN)/farmstand migrate
	@$(BIN)/farmstand demo
	@$(BIN)/farmstand serve --host $(HOST) --port $(PORT)

test: install-dev
	@$(BIN)/ruff check .
	@$(BIN)/farmstand docs --check
	@$(BIN)/pytest -n auto --cov --cov-report=term $(PYTEST_ARGS)

lint: install-dev
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

format: install-dev
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

docs: install-dev
	@$(BIN)/farmstand docs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .coverage htmlcov
