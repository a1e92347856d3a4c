# Gatehouse: `make run` serves the console on the embedded default; `make test` lints, then runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The tests start hundreds of Python processes (consoles, workers, tool servers). Where the environment
# says not to write bytecode caches, each compiled the project's modules again: 0.2 s of a console's
# 1.5 s start. The caches go to __pycache__ folders, which git ignores.
unexport PYTHONDONTWRITEBYTECODE

# Production mode for the tests: the local PostgreSQL (trust auth) and Redis database 15.
TEST_PRODUCTION_ENV := DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
	REDIS_URL=redis://127.0.0.1:6379/15 \
	GATEHOUSE_SECRET_KEY=test-only-secret-key-0123456789-0123456789-0123456789 \
	GATEHOUSE_AUDIT_HASH_KEY=test-only-audit-hash-key-0123456789-0123456789-012345 \
	GATEHOUSE_CREDENTIALS_KEY=test-only-credentials-key-0123456789-0123456789-0123 \
	GATEHOUSE_AUDIT_SIGNING_KEY=test-only-audit-signing-key-0123456789-0123456789-0123 \
	GATEHOUSE_LAB=true GATEHOUSE_LAB_IN_PRODUCTION=true \
	GATEHOUSE_ALLOWED_HOSTS=127.0.0.1,localhost,testserver \
	GATEHOUSE_HTTPS=false
# The slowest tests are listed at the end of each run: where the suite's time goes.
PYTEST_ARGS ?= --durations=40
TEST_EMBEDDED_ENV := DATABASE_URL= REDIS_URL= GATEHOUSE_DATA_DIR=$(CURDIR)/var/test-embedded

.PHONY: run test test-setup system-packages test-production test-production-a test-production-b test-embedded test-embedded-a test-embedded-b lint format install static services chromium slapd alertmanager \
	conformance conformance-tools mcp-servers vendor-mcp test-under-load clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

static: install
	$(BIN)/python manage.py collectstatic --noinput -v0

run: static
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py serve --port $(PORT)

services:
	scripts/services.sh

chromium:
	scripts/chromium.sh

# The LDAP adapter's tests start their own slapd from Debian's package (never the system service).
slapd:
	scripts/slapd.sh

# The Alertmanager test starts its own from Debian's package (never the system service).
alertmanager:
	scripts/alertmanager.sh

# Third-party MCP servers the external-server tests run, from the committed lockfile (needs node and npm).
MCP_SERVERS := integrations/mcp-servers
$(MCP_SERVERS)/node_modules/.installed: $(MCP_SERVERS)/package-lock.json
	cd $(MCP_SERVERS) && npm ci --no-audit --no-fund
	touch $@

mcp-servers: $(MCP_SERVERS)/node_modules/.installed

# Vendors' MCP servers from PyPI, each in a virtualenv of its own under var/vendor-mcp/<name> (their own mcp
# and other pins never meet ours), installed exactly as integrations/vendor-mcp/<name>.txt pins them; again
# only when that file changes.
VENDOR_MCP := var/vendor-mcp
$(VENDOR_MCP)/%/.installed: integrations/vendor-mcp/%.txt
	rm -rf $(VENDOR_MCP)/$*
	$(PYTHON) -m venv $(VENDOR_MCP)/$*
	$(VENDOR_MCP)/$*/bin/pip install --quiet --disable-pip-version-check --no-deps -r $<
	$(VENDOR_MCP)/$*/bin/pip check --disable-pip-version-check
	touch $@

vendor-mcp: $(VENDOR_MCP)/falcon/.installed

# The official MCP conformance suite and the inspector CLI, pinned by conformance/package-lock.json
# (npm ci again when it changes; no install scripts run).
CONFORMANCE_TOOLS := conformance/node_modules/.package-lock.json
$(CONFORMANCE_TOOLS): conformance/package-lock.json
	cd conformance && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

conformance-tools: $(CONFORMANCE_TOOLS)

# The built-in tool servers against them (tests/toolserver/test_conformance.py); `make test` runs it too.
conformance: install conformance-tools
	env $(TEST_EMBEDDED_ENV) $(BIN)/pytest tests/toolserver/test_conformance.py

# ruff (rules and format in pyproject.toml) over everything, mypy over toolserver/. `make test` runs it first.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Rewrites files in place: run it on a tree with nothing else in flight.
format: install
	$(BIN)/ruff format .

# The two modes share nothing (PostgreSQL + Redis, SQLite under var/), so they run side by side,
# each in two halves with a database (and Redis database) of its own: four runs keep both cores
# busy to the end, where one run a mode left one core idle for the longer run's last minutes.
# Each run's output is printed whole when it ends.
# The second half is whatever the first is not, so a new folder of tests runs without being named here.
# The API's fuzzing (about a minute a mode) runs in the first half: without it the second half ran alone for
# its last minute, on one of the two cores.
TEST_MOVED_TO_A := tests/console/test_api_input.py
TEST_HALF_A := tests/investigations $(wildcard tests/test_*.py) $(TEST_MOVED_TO_A)
TEST_HALF_B := tests --ignore=tests/investigations --ignore-glob='tests/test_*.py' $(addprefix --ignore=,$(TEST_MOVED_TO_A))
test: test-setup
	$(MAKE) --no-print-directory -j4 --output-sync=target \
		test-production-a test-production-b test-embedded-a test-embedded-b

# What the tests need, set up side by side: the venv's install, the npm and vendor installs share nothing
# (lint and static wait for the venv). Debian's packages go one after another (apt takes one lock).
test-setup:
	$(MAKE) --no-print-directory -j4 --output-sync=target \
		lint static services system-packages conformance-tools mcp-servers vendor-mcp

system-packages:
	for target in chromium slapd alertmanager; do $(MAKE) --no-print-directory $$target || exit 1; done

test-production:
	env $(TEST_PRODUCTION_ENV) $(BIN)/pytest $(PYTEST_ARGS)

test-production-a:
	env $(TEST_PRODUCTION_ENV) $(BIN)/pytest $(PYTEST_ARGS) $(TEST_HALF_A)

test-production-b:
	env $(TEST_PRODUCTION_ENV) DATABASE_URL=postgres://postgres@127.0.0.1:5432/test_b REDIS_URL=redis://127.0.0.1:6379/13 \
		$(BIN)/pytest $(PYTEST_ARGS) $(TEST_HALF_B)

test-embedded:
	env $(TEST_EMBEDDED_ENV) $(BIN)/pytest -m "not production" $(PYTEST_ARGS)

test-embedded-a:
	env $(TEST_EMBEDDED_ENV) $(BIN)/pytest -m "not production" $(PYTEST_ARGS) $(TEST_HALF_A)

test-embedded-b:
	env $(TEST_EMBEDDED_ENV) GATEHOUSE_DATA_DIR=$(CURDIR)/var/test-embedded-b \
		$(BIN)/pytest -m "not production" $(PYTEST_ARGS) $(TEST_HALF_B)

# The tests that start consoles, workers and Chromium, while a burner keeps both cores busy (not part
# of `make test`: it measures how the suite's waits hold on a loaded machine).
UNDER_LOAD_TESTS := tests/browser tests/investigations/test_workers.py tests/investigations/test_actions_workers.py \
	tests/investigations/test_concurrent_approvals.py tests/investigations/test_orphan_servers.py \
	tests/investigations/test_unknown_outcome.py tests/console/test_healthz.py tests/console/test_serve_stop.py
test-under-load: static services chromium slapd mcp-servers
	scripts/under_load.sh env $(TEST_PRODUCTION_ENV) $(BIN)/pytest $(PYTEST_ARGS) $(UNDER_LOAD_TESTS)

clean:
	rm -rf $(VENV) var conformance/node_modules $(MCP_SERVERS)/node_modules
