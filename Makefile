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

.DEFAULT_GOAL := help
.PHONY: help install tools run test lint fmt lock lock-tools openapi clean-local bench

help:
	@echo "make run    start the engine locally (embedded PostgreSQL + Redis, paper exchange)"
	@echo "make test   run the whole test suite against real PostgreSQL and Redis"
	@echo "make lint   ruff format --check, ruff check, mypy"
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

run: install
	$(BIN)/jadetrade run

test: install tools
	cd $(ENGINE) && .venv/bin/python -m pytest $(PYTEST_ARGS)

lint: install
	cd $(ENGINE) && .venv/bin/ruff format --check . && .venv/bin/ruff check . && .venv/bin/mypy app tests migrations

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
