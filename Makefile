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

.PHONY: .venv test unit integration package-check mutation demo lint typecheck-tree constraints \
	checkov checkov-pins clean distclean node-reader contract

.venv: $(STAMP)

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11+ not found on PATH (or pass PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Re-installs whenever pyproject.toml or constraints.txt changes.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -c constraints.txt -e '.[dev]'
	touch $@

# The Node reader example's locked dependencies (its test installs them too when missing).
NODE_READER := infra/examples/node-reader
node-reader: $(NODE_READER)/node_modules/.package-lock.json

$(NODE_READER)/node_modules/.package-lock.json: $(NODE_READER)/package-lock.json
	cd $(NODE_READER) && npm ci --no-audit --no-fund

contract: $(STAMP)
	$(BIN)/python -m redis_spanner.schemas.contract

# What CI runs: lint, types (strict, every package and the tests), then the whole suite.
# The suite mostly waits on the emulators and on faults it injects: three pytest workers (each
# with its own emulators and redis-server) finish it in well under the time of one on 2 cores.
PYTEST_WORKERS ?= 3

test: $(STAMP) typecheck-tree node-reader
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(call run_pytest,-n $(PYTEST_WORKERS))

unit: $(STAMP)
	$(call run_pytest,-m "not integration")

integration: $(STAMP) node-reader
	$(call run_pytest,-m integration)

# Build the wheel and sdist, twine check, and use the wheel from a fresh virtualenv beside a
# service's own schemas.py (about a minute). `make test` runs it with the rest of tests/.
package-check: $(STAMP)
	$(call run_pytest,tests/package)

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

# checkov pins dependencies that clash with ours: it runs from a virtualenv of its own, installed
# from .ci/checkov-requirements.txt. Its settings (and any skipped check, with the reason) are in
# infra/.checkov.yaml.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: .ci/checkov-requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11+ not found on PATH (or pass PYTHON=...)" >&2; exit 1; }
	test -x $(CHECKOV_VENV)/bin/pip || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -r .ci/checkov-requirements.txt
	touch $@

checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --config-file infra/.checkov.yaml

# After a deliberate checkov upgrade in .venv-checkov: pin what is installed there.
checkov-pins: $(CHECKOV_VENV)/.installed
	{ sed -n '1,2p' .ci/checkov-requirements.txt; $(CHECKOV_VENV)/bin/pip freeze; } \
		> .ci/checkov-requirements.txt.tmp && mv .ci/checkov-requirements.txt.tmp .ci/checkov-requirements.txt

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
	rm -rf $(VENV) $(CHECKOV_VENV) $(NODE_READER)/node_modules
