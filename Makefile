# Every target creates .venv on first use, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-all typecheck lint format docs docs-serve dist check-wheel bench bench-compare bench-asgi clean

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[hug,redis,hiredis,postgres,test,example]'
	touch $@

# --preload: the app is imported once, so both workers share the key made when SESSION_SECRET is unset.
run: $(VENV)/.installed
	$(BIN)/gunicorn --bind $(HOST):$(PORT) --workers 2 --preload --access-logfile - examples.app:__hug_wsgi__

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick suite, the type check, the docs site, the built wheel in a fresh venv, then the nox
# matrix (noxfile.py): hug on Python 3.9-3.13, Falcon 3 and 4 WSGI + ASGI.
test-all: test typecheck docs check-wheel
	$(BIN)/nox $(NOX_ARGS)

# The docs site (mkdocs.yml): --strict turns a broken link or anchor, or a missing API reference, into a
# failure (not --quiet: it hides the warnings that --strict counts).
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr $(HOST):$(PORT)

$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[hug,redis,postgres,test,docs,dist]'
	touch $@

# sdist and wheel into dist/, checked by twine; a deprecation warning from the build fails it.
dist: $(VENV)/.docs-installed
	rm -rf dist
	$(BIN)/python -m build --outdir dist . >$(VENV)/build.log 2>&1 || { cat $(VENV)/build.log; exit 1; }
	! grep -i -A8 deprecat $(VENV)/build.log
	$(BIN)/twine check --strict dist/*

# The built wheel alone, in a fresh venv outside the checkout: it installs without a deprecation
# warning, imports, and its command prints the package's version.
WHEEL_VENV := $(VENV)/wheel-check
check-wheel: dist
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install --quiet --disable-pip-version-check dist/*.whl \
		>$(VENV)/wheel-install.log 2>&1 || { cat $(VENV)/wheel-install.log; exit 1; }
	! grep -i -A8 deprecat $(VENV)/wheel-install.log
	cd / && $(CURDIR)/$(WHEEL_VENV)/bin/python -c 'import hug_cookie_sessions as h, sys; \
		assert "site-packages" in h.__file__, h.__file__; print(h.__name__, h.__version__, h.__file__)'
	test "$$($(WHEEL_VENV)/bin/hug-sessions --version)" = \
		"hug-sessions $$($(BIN)/python -c 'import hug_cookie_sessions as h; print(h.__version__)')"

# mypy --strict on the package (its settings: [mypy] in setup.cfg); it must report no error.
typecheck: $(VENV)/.installed
	$(BIN)/mypy

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

# This package on falcon.asgi.App (MemoryStore, SQLiteStore, AsyncRedisStore) beside starsessions
# on Starlette, each over its own bare app; writes the "ASGI side by side" section of
# docs/benchmarks.md. ASGI needs Falcon 4 (hug pins .venv to Falcon 2), hence its own .venv-asgi.
# About two minutes; `make bench-asgi ASGI_ARGS="--rounds 3 --number 10"` checks that it works.
ASGI_VENV := .venv-asgi
ASGI_ARGS ?= --output docs/benchmarks.md
bench-asgi: $(ASGI_VENV)/.installed
	$(ASGI_VENV)/bin/python -m bench.asgi $(ASGI_ARGS)

$(ASGI_VENV)/.installed: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(ASGI_VENV)
	$(ASGI_VENV)/bin/pip install --quiet --upgrade pip
	$(ASGI_VENV)/bin/pip install --quiet -e '.[redis,hiredis,bench]' 'falcon>=4,<5'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[hug,redis,hiredis,postgres,test,bench]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(ASGI_VENV) .nox .pytest_cache .ruff_cache .mypy_cache *.egg-info build dist site
