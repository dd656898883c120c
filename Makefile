# Every target creates .venv on first use, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-all lint format bench bench-compare clean

$(VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[hug,redis,postgres,test,example]'
	touch $@

# --preload: the app is imported once, so both workers share the key made when SESSION_SECRET is unset.
run: $(VENV)/.installed
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers 2 --preload --access-logfile - examples.app:__hug_wsgi__

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick suite, then the nox matrix (noxfile.py): hug on Python 3.9-3.13, Falcon 3 and 4 WSGI + ASGI.
test-all: test
	$(BIN)/nox $(NOX_ARGS)

# About five minutes on two cores; writes docs/benchmarks.md and docs/benchmarks.png.
# `make bench BENCH_ARGS=--quick` checks in a minute that it works (figures go to a temp dir).
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# This checkout's session layer against BASE's (git archive; needs the history), side by side in
# one process per share of the rounds; writes the "Side by side with" section of docs/benchmarks.md.
# About a minute; `make bench-compare COMPARE_ARGS=--quick` checks in seconds that it works (prints only).
BASE ?= 3225229
COMPARE_ARGS ?= --output docs/benchmarks.md
bench-compare: $(VENV)/.bench-installed
	$(BIN)/python -m bench.compare --base $(BASE) $(COMPARE_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[hug,redis,postgres,test,bench]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .nox .pytest_cache .ruff_cache *.egg-info
