# The README's two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Node clients of the cross-language suite (tests/clients), reinstalled when the lock changes.
CLIENTS := tests/clients
CLIENT_STAMP := $(CLIENTS)/node_modules/.installed

.PHONY: demo test check lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,zoho-sdk-tests,postgres]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/crm-risk demo

test: $(DEV_STAMP)
	@if command -v node >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(CLIENT_STAMP); \
	else \
		echo "make test: node is not on the PATH; the cross-language client suite (tests/clients) will be SKIPPED"; \
	fi
	@command -v chromium >/dev/null 2>&1 || echo "make test: Debian's chromium is not installed (apt-get install chromium; .ci/run does it as root); the browser tests (tests/browser) will be SKIPPED"
	$(BIN)/python -m pytest

$(CLIENT_STAMP): $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	@echo "make test: installing the Node clients of tests/clients (npm ci; cached until package-lock.json changes)"
	cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python bench/sync_calls.py --sizes 1000
	$(BIN)/python bench/scoring.py --accounts 10000

clean:
	rm -rf $(VENV) build *.egg-info $(CLIENTS)/node_modules .cache
