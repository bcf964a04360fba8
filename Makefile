# The two commands of the README: `make demo` (the main job on the embedded lab) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean help-pages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/ruff check pcnctl tests $(wildcard benchmarks)
	$(BIN)/ruff format --check pcnctl tests $(wildcard benchmarks)
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pcnctl tests $(wildcard benchmarks)

clean:
	rm -rf $(VENV) .demo .pytest_cache build *.egg-info

# The --help pages the entry point prints without importing Typer (tests/test_help_pages.py checks them).
help-pages: $(STAMP)
	$(BIN)/python -m pcnctl.cli.help_pages
