# Two commands do everything, on a fresh machine with Python 3.11+:
#   make run    conformance run against the embedded reference gateway, reports in reports/runs/
#   make test   the project's own tests (lint, types, unit, gateway, mutation matrix)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The installed layout as links, for mypy and import-linter (opconform/layout.py).
LAYOUT := $(VENV)/layout
# Re-installs only when the dependency list changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

NODE_STAMP := conformance/node/node_modules/.installed

setup: $(STAMP) $(NODE_STAMP) go-sdk

# The official Node SDK for the sdk checks; without npm those checks report DISABLED.
$(NODE_STAMP): conformance/node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix conformance/node --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the Node SDK checks will be DISABLED"; fi

# The Go SDKs for the sdk checks: modules fetched (`go mod download`) and the runner built into
# its cache ahead of a run (the first build takes 2-3 minutes); without go or its modules those
# checks report DISABLED, and a failure here never stops setup.
go-sdk: $(STAMP)
	@if command -v go >/dev/null 2>&1; then \
		$(BIN)/python -m opconform.conformance.gosdk || echo "the Go SDK runner did not build: its checks will fail"; \
	else echo "go not found: the Go SDK checks will be DISABLED"; fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "opconform needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: setup
	$(BIN)/opconform run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m opconform.layout $(LAYOUT) tests benchmarks
	cd $(LAYOUT) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml opconform tests benchmarks
	cd $(LAYOUT) && $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml --no-cache

test: lint
	$(BIN)/python -m pytest

# Everything but the cases marked slow.
test-quick: setup
	$(BIN)/python -m pytest -m "not slow"

# What `make test` leaves out for time (marker nightly): the whole default suite against every
# fault and combination, exact root causes asserted (8-13 min on 2 shared cores), and the
# interop runs against the two real rate limiters (paced at the Free plan: ~4 min, and LiteLLM
# installs ~490 MB). Not part of `make test` or .ci/run.
test-nightly: setup
	$(BIN)/python -m pytest -m nightly tests/integration/test_mutation_matrix.py tests/interop/test_matrix.py \
		tests/interop/test_servers.py

bench: setup
	$(BIN)/python benchmarks/gateway_throughput.py

serve: setup
	$(BIN)/opconform serve

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache conformance/node/node_modules
