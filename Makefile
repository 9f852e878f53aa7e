# syncd developer commands. `make demo` and `make test` are the README's Quickstart.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# `make install`: man pages, shell completion, systemd units, sysusers.d and tmpfiles.d files
# (the program itself is a venv: python3 -m venv /opt/syncd && /opt/syncd/bin/pip install
# -c constraints.txt '.[postgres]'). DESTDIR stages a package root.
PREFIX ?= /usr/local
DESTDIR ?=
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
# Where `make docs` writes the generated man pages and completion scripts.
DOCS ?= build/docs

.PHONY: venv constraints system-deps test lint demo docs install clean

venv: $(VENV)/.installed

# constraints.txt pins every package of a working venv: installs are reproducible.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,postgres]'
	touch $@

# After changing dependencies in pyproject.toml: re-pin from a fresh venv, then review the diff.
constraints:
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,postgres]'
	{ echo "# pip constraints: the versions syncd is tested with (make constraints)."; \
	  $(PY) -m pip freeze --exclude-editable; } > constraints.txt
	touch $(VENV)/.installed

# Servers and tools the tests start for real (PostgreSQL, OpenSSL); installed with apt if missing.
system-deps:
	bash .ci/system-deps

# Two workers (one per core of the reference machine); a test file stays on one worker, so
# its module and session fixtures (PostgreSQL, slapd, the sandbox) start once per worker.
# Files are handed out in collection order, the longest first (LONGEST_FILES in
# tests/conftest.py), not xdist's default order (most tests first), which ran the few long
# files last, one worker busy and the other idle.
PYTEST_WORKERS ?= 2

test: venv system-deps lint
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

lint: venv
	$(VENV)/bin/ruff check syncd tests migrations bench docs/gen
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy docs/gen/docgen.py docs/gen/roff.py

demo: venv
	$(VENV)/bin/syncd demo --dir demo

# syncd(8), syncd.yaml(5), bash and zsh completion, generated from the parser and the schema.
docs: venv
	$(PY) docs/gen/docgen.py --out $(DOCS)

install: docs
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR)
	install -m 0644 $(DOCS)/man8/syncd.8 $(DESTDIR)$(MANDIR)/man8/syncd.8
	install -m 0644 $(DOCS)/man5/syncd.yaml.5 $(DESTDIR)$(MANDIR)/man5/syncd.yaml.5
	install -m 0644 $(DOCS)/completion/syncd $(DESTDIR)$(BASHCOMPDIR)/syncd
	install -m 0644 $(DOCS)/completion/_syncd $(DESTDIR)$(ZSHCOMPDIR)/_syncd
	install -m 0644 systemd/syncd.service systemd/syncd-report.service \
		systemd/syncd-report.timer $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -m 0644 systemd/sysusers.d/syncd.conf $(DESTDIR)$(SYSUSERSDIR)/syncd.conf
	install -m 0644 systemd/tmpfiles.d/syncd.conf $(DESTDIR)$(TMPFILESDIR)/syncd.conf

clean:
	rm -rf demo build .pytest_cache .mypy_cache .ruff_cache
