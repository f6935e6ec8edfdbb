# The targets the README, a developer and CI run verbatim.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install npm run test lint typecheck check clean example bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install  ## Run the server on the embedded default (SQLite, no other service).
	$(BIN)/apiward serve

# The Node.js packages of the interop tests, when Node.js is here (else those tests skip
# and say how to enable them).
NPM_DIRS := tests/interop
npm: $(foreach d,$(NPM_DIRS),$(d)/node_modules/.installed)
%/node_modules/.installed: %/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $* --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the tests under $* will be skipped (install Node.js and npm)"; fi

test: install npm  ## The whole test suite; the summary lists what was skipped and why.
	$(BIN)/pytest

example: install  ## The example business API of examples/things.py on port 8001.
	APIWARD_DATABASE_URL=$${APIWARD_DATABASE_URL:-sqlite+aiosqlite:///./things.db} \
	  $(BIN)/uvicorn examples.things:app --port 8001

bench: install  ## The benchmark suite (bench/README.md), a few minutes; writes bench/results/.
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m pip install --quiet granian matplotlib pyinstrument py-spy
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.turns
	$(BIN)/python -m bench.endpoints
	$(BIN)/python -m bench.checkpath
	$(BIN)/python -m bench.inprocess
	$(BIN)/python -m bench.limiter
	$(BIN)/python -m bench.grants
	$(BIN)/python -m bench.workers
	$(BIN)/python -m bench.flames
	$(BIN)/python -m bench.plot

lint: install
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench

typecheck: install
	$(BIN)/mypy

check: test lint typecheck

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
