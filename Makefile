# JadeTrade — developer entry points. `make run` and `make test` install what they need.

PYTHON ?= python3
ENGINE := bot-engine
VENV   := $(ENGINE)/.venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov and check-jsonschema validate the deployment files; their own venv keeps their
# dependency tree out of the engine's.
TOOLS       := $(ENGINE)/.tools-venv
TOOLS_STAMP := $(TOOLS)/.installed-stamp

# The web dashboard (React + Vite): built when Node.js is present; the API works without it.
WEB        := web
WEB_STAMP  := $(WEB)/node_modules/.installed-stamp
WEB_DIST   := $(WEB)/dist/index.html
WEB_INPUTS := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/vite.config.ts \
              $(WEB)/tsconfig.json $(WEB)/package-lock.json
CHROMIUM   := /usr/bin/chromium

.DEFAULT_GOAL := help
.PHONY: help install tools run test chaos scale-test lint fmt lock lock-tools openapi clean-local bench \
        web web-if-node web-test browser

help:
	@echo "make run    start the engine locally (embedded PostgreSQL + Redis, paper exchange)"
	@echo "make test   run the whole test suite against real PostgreSQL and Redis"
	@echo "make chaos  fault drill: workers killed, Redis and PostgreSQL restarted, exchange faults"
	@echo "           (CHAOS_SECONDS=150 by default; prints what was lost, doubled, recovered)"
	@echo "make scale-test  2 APIs behind a round-robin proxy, 3 workers, thousands of alerts"
	@echo "           (SCALE_ALERTS=4000 by default; prints order, duplicates, per-process share)"
	@echo "make web    build the web dashboard into web/dist (needs Node.js 20.19+)"
	@echo "make lint   ruff format --check, ruff check, mypy, bandit, pip-audit"
	@echo "           (AUDIT_STRICT=1: packages that could not be audited fail it)"
	@echo "make fmt    apply ruff formatting and fixes"
	@echo "make bench  benchmarks against a baseline measured in the same run"
	@echo "make lock   re-pin the full dependency set into $(ENGINE)/requirements.lock"
	@echo "make openapi  regenerate docs/api/openapi.yml from the application"

$(STAMP): $(ENGINE)/pyproject.toml $(ENGINE)/requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c $(ENGINE)/requirements.lock -e '$(ENGINE)[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): $(ENGINE)/requirements-tools.lock
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r $(ENGINE)/requirements-tools.lock
	@touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(WEB_STAMP)

$(WEB_DIST): $(WEB_STAMP) $(WEB_INPUTS)
	cd $(WEB) && npm run --silent build
	@touch $(WEB_DIST)

web: $(WEB_DIST)

# `make run` serves the dashboard when it can be built, and the API alone when it cannot.
web-if-node:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory web; \
	else echo "Node.js not found: the dashboard is not built (the API works without it)"; fi

web-test: $(WEB_STAMP)
	cd $(WEB) && npx tsc -b && npx vitest run

# The end-to-end tests drive Debian's Chromium (a test tool's own browser download cannot run
# here); installed once, as root, when missing.
browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "Chromium is missing: install the 'chromium' package to run the browser tests"; fi; }

run: install web-if-node
	$(BIN)/jadetrade run

test: install tools web-test web browser
	cd $(ENGINE) && .venv/bin/python -m pytest $(PYTEST_ARGS)

# The suite runs a short drill; this one injects faults for CHAOS_SECONDS with more processes.
# Other CHAOS_* variables: tests/support/chaos.py (ChaosParams).
CHAOS_SECONDS ?= 150
chaos: install
	cd $(ENGINE) && CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_WORKERS=$${CHAOS_WORKERS:-3} \
		CHAOS_APIS=$${CHAOS_APIS:-2} .venv/bin/python -m pytest -s -q -p no:cacheprovider \
		tests/e2e/test_chaos.py::test_under_faults_no_accepted_alert_is_lost_and_no_order_is_placed_twice \
		$(PYTEST_ARGS)

# The suite runs the scale-out test small; this one sends SCALE_ALERTS from SCALE_USERS users and
# prints the summary. Other SCALE_* variables: tests/e2e/test_scale_out.py (ScaleParams).
SCALE_USERS   ?= 40
SCALE_SYMBOLS ?= 5
SCALE_ALERTS  ?= 4000
SCALE_RATE    ?= 80
scale-test: install
	cd $(ENGINE) && SCALE_USERS=$(SCALE_USERS) SCALE_SYMBOLS=$(SCALE_SYMBOLS) \
		SCALE_ALERTS=$(SCALE_ALERTS) SCALE_RATE=$(SCALE_RATE) SCALE_WS_USERS=$${SCALE_WS_USERS:-8} \
		SCALE_CONNECTIONS=$${SCALE_CONNECTIONS:-32} SCALE_DRAIN_S=$${SCALE_DRAIN_S:-180} \
		.venv/bin/python -m pytest tests/e2e/test_scale_out.py -m scale_out -s -q \
		-p no:cacheprovider $(PYTEST_ARGS)

# bandit (config: [tool.bandit] in pyproject.toml) at every severity and confidence: app and
# migrations in full; tests without the checks that flag what tests are made of (asserts,
# fixture secrets, /tmp, random, subprocess), as ruff's per-file ignores have it. bandit also
# warns "nosec encountered (BXXX), but no failed test" for every line of a multi-line statement
# that carries a `# nosec BXXX` (PyCQA/bandit#1041); that warning alone is dropped.
BANDIT_TEST_SKIPS := B101,B105,B106,B108,B311,B404,B603,B607
BANDIT = log=$$(mktemp) && { .tools-venv/bin/bandit -c pyproject.toml -q --severity-level low \
	--confidence-level low -r $(1) $(2) 2>"$$log"; rc=$$?; grep -v 'nosec encountered' "$$log" >&2; \
	rm -f "$$log"; [ $$rc -ne 0 ] || echo "bandit $(1): no issues, low severity and up"; exit $$rc; }

# The dependency audit fails on a known vulnerability; packages it could not audit (no
# vulnerability service reachable) are counted on a loud line, and fail with AUDIT_STRICT=1.
lint: install tools
	cd $(ENGINE) && .venv/bin/ruff format --check . && .venv/bin/ruff check . && .venv/bin/mypy app tests migrations scripts
	cd $(ENGINE) && $(call BANDIT,app migrations)
	cd $(ENGINE) && $(call BANDIT,tests,--skip $(BANDIT_TEST_SKIPS))
	cd $(ENGINE) && .tools-venv/bin/python scripts/audit_deps.py --pip-audit .tools-venv/bin/pip-audit \
		requirements.lock requirements-tools.lock

fmt: install
	cd $(ENGINE) && .venv/bin/ruff format . && .venv/bin/ruff check --fix .

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lock: install
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check \
		| grep -v '^-e ' > $(ENGINE)/requirements.lock

openapi: install
	$(BIN)/jadetrade openapi --output docs/api/openapi.yml

lock-tools: tools
	$(TOOLS)/bin/python -m pip freeze --disable-pip-version-check \
		| grep -v '^-e ' > $(ENGINE)/requirements-tools.lock.new
	{ head -2 $(ENGINE)/requirements-tools.lock; cat $(ENGINE)/requirements-tools.lock.new; } \
		> $(ENGINE)/requirements-tools.lock.tmp
	mv $(ENGINE)/requirements-tools.lock.tmp $(ENGINE)/requirements-tools.lock
	rm $(ENGINE)/requirements-tools.lock.new

clean-local:
	rm -rf .local
