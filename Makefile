# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench bench-web bench-desk clean chromium postgres

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: set up and run the daemon on its built-in defaults (127.0.0.1:2525, ./var)
run: $(STAMP)
	$(BIN)/ticketmail serve

## check: static checks only
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict ticketmail

## chromium: the browser tests drive Debian's Chromium (Playwright never downloads one)
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "the browser tests need Debian's Chromium: run 'sudo apt-get install chromium', then make test"; \
	    exit 1; \
	  fi; \
	fi

## postgres: the PostgreSQL tests start a throwaway cluster of their own from Debian's binaries
## (tests/pgcluster.py); the system's own cluster, if the package made one, is never used
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	  else \
	    echo "the PostgreSQL tests need Debian's postgresql: run 'sudo apt-get install postgresql', then make test"; \
	    exit 1; \
	  fi; \
	fi

## test: set up, run the static checks and the whole test suite (browser and PostgreSQL tests included)
test: check chromium postgres
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/pytest
	TICKETMAIL_TEST_BACKEND=postgres PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/pytest

## bench: the intake benchmark (not part of the tests)
bench: $(STAMP)
	$(BIN)/python bench/run.py

## bench-web: the portal's pages under 20 logged-in clients (not part of the tests)
bench-web: $(STAMP)
	$(BIN)/python bench/web.py

## bench-desk: the desk's queue and search under 10 logged-in agents (not part of the tests)
bench-desk: $(STAMP)
	$(BIN)/python bench/desk.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
