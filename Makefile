# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench clean

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

## test: set up, run the static checks and the whole test suite
test: check
	$(BIN)/pytest

## bench: the intake benchmark (not part of the tests)
bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
