# JadeTrade — developer entry points. `make run` and `make test` install what they need.

PYTHON ?= python3
ENGINE := bot-engine
VENV   := $(ENGINE)/.venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt lock clean-local bench

help:
	@echo "make run    start the engine locally (embedded PostgreSQL + Redis, paper exchange)"
	@echo "make test   run the whole test suite against real PostgreSQL and Redis"
	@echo "make lint   ruff format --check, ruff check, mypy"
	@echo "make fmt    apply ruff formatting and fixes"
	@echo "make bench  benchmarks against a baseline measured in the same run"
	@echo "make lock   re-pin the full dependency set into $(ENGINE)/requirements.lock"

$(STAMP): $(ENGINE)/pyproject.toml $(ENGINE)/requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c $(ENGINE)/requirements.lock -e '$(ENGINE)[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/jadetrade run

test: install
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

clean-local:
	rm -rf .local
