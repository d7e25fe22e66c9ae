# Everything runs from the project's own virtualenv (.venv), created and installed on first use.
# Needs: Python 3.11+, Java 17, the Cloud SDK Pub/Sub and Spanner emulators, redis-server.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# The newest Python 3.11+ found on PATH; override with `make PYTHON=/path/to/python3.12`.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { command -v $$p; break; }; done)

# pytest exits 5 when it collected no tests: say so, and fail.
run_pytest = $(BIN)/pytest $(1) $(PYTEST_ARGS) || { rc=$$?; \
	[ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

.PHONY: .venv test unit integration mutation demo lint typecheck-tree constraints clean distclean

.venv: $(STAMP)

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11+ not found on PATH (or pass PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Re-installs whenever pyproject.toml or constraints.txt changes.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $@

# What CI runs: lint, types (strict, every package and the tests), then the whole suite.
test: $(STAMP) typecheck-tree
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(call run_pytest,)

unit: $(STAMP)
	$(call run_pytest,-m "not integration")

integration: $(STAMP)
	$(call run_pytest,-m integration)

# Slow, so not part of `make test`: mutmut over the modules that decide coherence (see
# [tool.mutmut] in pyproject.toml), on a copy of the package laid out as it installs.
MUTATION := build/mutation
mutation: $(STAMP)
	rm -rf $(MUTATION) && mkdir -p $(MUTATION)/redis_spanner
	cp redis_spanner/__init__.py redis_spanner/py.typed $(MUTATION)/redis_spanner/
	for pkg in schemas producers consumers infra; do cp -r $$pkg $(MUTATION)/redis_spanner/; done
	cp -r tests pyproject.toml $(MUTATION)/
	find $(MUTATION) -name __pycache__ -type d -prune -exec rm -rf {} +
	cd $(MUTATION) && ../../$(BIN)/python -m tests.mutation

demo: $(STAMP)
	$(BIN)/redis-spanner demo

# mypy can't follow the editable install's import hook, so it reads the package through a tree
# of links laid out as the wheel installs it (pyproject.toml maps the folders the same way).
TYPECHECK := build/typecheck/redis_spanner
typecheck-tree:
	@mkdir -p $(TYPECHECK)
	@ln -sfn ../../../redis_spanner/__init__.py $(TYPECHECK)/__init__.py
	@ln -sfn ../../../redis_spanner/py.typed $(TYPECHECK)/py.typed
	@for pkg in schemas producers consumers infra; do ln -sfn ../../../$$pkg $(TYPECHECK)/$$pkg; done

lint: $(STAMP) typecheck-tree
	$(BIN)/ruff check .
	$(BIN)/mypy

# Pin what is installed now (after a deliberate upgrade in the virtualenv).
constraints: $(STAMP)
	{ echo "# Exact versions of every package in the dev virtualenv, so a fresh install is reproducible."; \
	  echo "# Regenerate after changing dependencies in pyproject.toml: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -i -e '^redis-spanner' -e '^redis_spanner'; \
	} > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt && touch $(STAMP)

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
