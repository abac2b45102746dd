# citydash: `make run` runs the whole product on a local stack; `make test` runs every test.
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: deps run test stack stop unit bench-ingest clean-var

deps:                     ## install Debian packages, TimescaleDB and .venv (idempotent)
	@bash devtools/stack/install.sh

run: deps                 ## local stack + migrations + demo city + simulator + ingestor + dashboard
	@$(PY) -m devtools.devrun

test: deps                ## import contracts, then the whole suite against its own throw-away services
	@.venv/bin/lint-imports
	@$(PY) -m pytest $(PYTEST_ARGS)

unit: deps                ## fast unit tests only (no services)
	@$(PY) -m pytest tests/unit -q

stack: deps               ## start TimescaleDB + Mosquitto under var/, write var/stack.env
	@$(PY) -m devtools stack start

stop:                     ## stop the local stack (data is kept under var/)
	@$(PY) -m devtools stack stop

clean-var: stop           ## delete the local stack's data
	rm -rf var
