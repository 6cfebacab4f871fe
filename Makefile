# Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev browser lint typecheck format docs guide-images bench uv clean

# uv installs from the committed lock file in seconds; get it with pip when missing.
uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# Bytecode is compiled at install: every server, worker and CLI process (and every process a
# test starts) then skips compiling its imports, which takes seconds of CPU each otherwise,
# notably where PYTHONDONTWRITEBYTECODE is set.
install: uv
	@$(UV) sync --frozen --no-dev --compile-bytecode --quiet
	@$(BIN)/python -m compileall -q src >/dev/null
	@touch $(VENV)/.installed

install-dev: uv
	@$(UV) sync --frozen --compile-bytecode --quiet
	@$(BIN)/python -m compileall -q src >/dev/null

# The browser tests drive Debian's chromium (never a downloaded one): installed here when missing
# and we are root with apt-get; otherwise those tests skip locally (and fail in CI, .ci/run).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium for the browser tests"; \
	    apt-get install -y -q chromium >/dev/null || \
	      { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "chromium is missing: the browser tests will skip (apt-get install chromium)"; fi; }

run: install
	@$(BIN)/farmstand migrate
	@$(BIN)/farmstand demo
	@$(BIN)/farmstand serve --host $(HOST) --port $(PORT)

# worksteal: a worker that runs out of tests takes some of another's, so the long tests (the
# bench, the browser ones) do not leave one core idle at the end.
test: install-dev browser
	@$(BIN)/ruff check .
	@$(BIN)/mypy
	@$(BIN)/farmstand docs --check
	@$(BIN)/pytest -n auto --dist worksteal --cov --cov-report=term $(PYTEST_ARGS)

lint: install-dev
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: install-dev
	@$(BIN)/mypy

format: install-dev
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

docs: install-dev
	@$(BIN)/farmstand docs

# The screenshots the guides show (docs/img/guide/), refreshed from the browser tests' last run.
guide-images:
	@grep -ho 'img/guide/[a-z0-9-]*\.png' docs/*.md | sort -u | sed 's|img/guide/||' | \
	  while read -r name; do cp test-artifacts/screenshots/$$name docs/img/guide/$$name; done

# The standard benchmark (docs/benchmarks.md): PostgreSQL and Redis on 127.0.0.1, results in
# bench-results/. Options go in BENCH_ARGS, e.g. make bench BENCH_ARGS="--quick".
bench: uv
	@$(UV) sync --frozen --extra bench --compile-bytecode --quiet
	@$(BIN)/python -m compileall -q src >/dev/null
	@$(BIN)/farmstand bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .coverage htmlcov
