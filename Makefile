# syncd developer commands. `make demo` and `make test` are the README's Quickstart.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv system-deps test lint demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Servers and tools the tests start for real (PostgreSQL, OpenSSL); installed with apt if missing.
system-deps:
	bash .ci/system-deps

# Two workers (one per core of the reference machine); a test file stays on one worker, so
# its module and session fixtures (PostgreSQL, slapd, the sandbox) start once per worker.
PYTEST_WORKERS ?= 2

test: venv system-deps lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15

lint: venv
	$(VENV)/bin/ruff check syncd tests migrations bench
	$(VENV)/bin/mypy

demo: venv
	$(PY) -m syncd.demo

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache
