# Every target creates .venv on first use, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-all lint format clean

$(VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[hug,redis,test]'
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

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .nox .pytest_cache .ruff_cache *.egg-info
