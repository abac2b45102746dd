# citydash: `make run` runs the whole product on a local stack; `make test` runs every test.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: deps run test stack stop unit screenshots locks bench-ingest clean-var
# pytest-xdist: two workers (the machines have 2 cores), whole files per worker so module-scoped
# fixtures (the explorer's seeded city) are built once; each worker starts its own TimescaleDB,
# Mosquitto and Redis (tests/conftest.py). `make test PYTEST_XDIST=-n0` runs serially.
PYTEST_XDIST ?= -n 2 --dist loadfile
# The locks are compiled with uv in a throw-away virtualenv (never .venv) for CPython 3.11 on x86_64 Linux.
UV_VERSION := 0.13.8
# `make locks LOCK_ARGS=--upgrade` moves every unpinned transitive package to its newest version;
# without it the versions already in the locks are kept.
LOCK_ARGS ?=
UV_COMPILE = uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu $(LOCK_ARGS)

deps:                     ## install Debian packages, TimescaleDB and .venv (idempotent)
	@bash devtools/stack/install.sh

run: deps                 ## local stack + migrations + demo city + simulator + ingestor + dashboard
	@$(PY) -m devtools.devrun

test: deps                ## import contracts, then the whole suite against its own throw-away services
	@.venv/bin/lint-imports
	@$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

unit: deps                ## fast unit tests only (no services)
	@$(PY) -m pytest tests/unit -q

screenshots: deps        ## regenerate docs/screenshots/ (wall, explorer) from the browser tests marked `screenshots`
	@CITYDASH_SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest -q -m screenshots tests/browser
	@echo "public-*.png: run .venv/bin/python bench/screenshot_public.py pt-BR ja while make run serves the demo city"

locks:                    ## recompile requirements.lock and requirements-test.lock (hashes) from requirements*.txt
	@tools=$$(mktemp -d) && trap 'rm -rf "$$tools"' EXIT && python3 -m venv "$$tools" \
	  && "$$tools/bin/pip" install -q --disable-pip-version-check uv==$(UV_VERSION) \
	  && PATH="$$tools/bin:$$PATH" $(UV_COMPILE) requirements.txt -o requirements.lock \
	  && PATH="$$tools/bin:$$PATH" $(UV_COMPILE) -c requirements.lock requirements-test.txt -o requirements-test.lock
	@python3 -c 'import tomllib, re; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  req = lambda f: sorted(l.strip().lower() for l in open(f) if re.match(r"[a-z]", l)); \
	  opt = sorted(set(x.lower() for x in p["optional-dependencies"]["test"] + p["optional-dependencies"]["bench"])); \
	  assert sorted(x.lower() for x in p["dependencies"]) == req("requirements.txt"), "pyproject dependencies != requirements.txt"; \
	  assert opt == req("requirements-test.txt"), "pyproject extras test+bench != requirements-test.txt"'
	@echo "locks written; make deps installs .venv from requirements-test.lock"

stack: deps               ## start TimescaleDB + Mosquitto under var/, write var/stack.env
	@$(PY) -m devtools stack start

stop:                     ## stop the local stack (data is kept under var/)
	@$(PY) -m devtools stack stop

clean-var: stop           ## delete the local stack's data
	rm -rf var
