# hostauth: `make run` serves on an embedded PostgreSQL; `make test` runs the
# test suite. Both install what they need into .venv first.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install gen check-gen lint breaking test system-postgres system-tools run bench bench-rewrap bench-ab bench-idle chaos clean lock dist

# What CI and a checkout install: the locked versions, hashes checked, then
# the package itself (editable) without resolving anything again.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The lock files, from pyproject.toml: requirements.lock is what the image
# installs (the service and its kms extra), requirements-dev.lock everything
# (all extras). tests/unit/test_lock.py fails when they disagree with pyproject.toml.
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock:
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) --extra kms -o requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile $(LOCK_FLAGS) --all-extras -o requirements-dev.lock pyproject.toml

# A wheel in dist/, the commit it is built from inside it (hostauth --version).
dist: install
	rm -rf dist build
	git rev-parse --short=12 HEAD > server/hostauth/COMMIT
	$(PY) -m build --wheel --outdir dist . ; status=$$?; rm -f server/hostauth/COMMIT; exit $$status

# Regenerate gen/ from proto/ and bench/gen/ from bench/proto/ (local plugins only; see buf.gen.yaml).
gen: install
	buf generate
	buf generate --template bench/buf.gen.yaml

# Fails when gen/ is not exactly what `make gen` produces from proto/.
check-gen: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	buf generate --output "$$tmp" && \
	buf generate --template bench/buf.gen.yaml --output "$$tmp" && \
	diff -r -x __pycache__ gen "$$tmp/gen" && \
	diff -r -x __pycache__ bench/gen "$$tmp/bench/gen" && echo "gen/ and bench/gen/ are up to date"

lint: install
	buf lint
	ruff check server tests tools bench
	ruff format --check server tests tools bench
	mypy server/hostauth bench

# Wire compatibility of the API (proto/) against the main branch.
breaking: install
	buf breaking proto --against '.git#branch=main,subdir=proto'

# The fast tier first (no PostgreSQL), then the rest. TLS to PostgreSQL is
# tested on Debian's PostgreSQL (the embedded one is built without SSL).
test: install check-gen system-postgres system-tools
	$(PY) -m pytest -q tests/unit
	$(PY) -m pytest -q tests/service tests/process

system-postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt-get install -y -q postgresql >/dev/null

# The README's runner example uses openssl (the key pair) and jq (an id from an answer).
system-tools:
	@command -v openssl >/dev/null && command -v jq >/dev/null || apt-get install -y -q openssl jq >/dev/null

run: install
	$(VENV)/bin/hostauth serve --dev

# The service under load next to its ceilings (docs/benchmarks.md); installs
# h2load and wrk from Debian's packages when missing.
bench: install
	$(PY) -m bench.service

# Faults under load, and a table of what each did; exits 1 on a loss, an internal or a dead worker.
chaos: install
	$(PY) -m bench.chaos

# Calls' p99 with 2,000 idle and 200 trickling connections a port, against none.
bench-idle: install
	$(PY) -m bench.idle_connections

# Online rewrap rows/s next to a plain batched UPDATE of the same rows.
bench-rewrap: install
	$(PY) -m bench.rewrap

# This checkout against another one (AGAINST=<dir>, with its own .venv), side
# by side in one sitting: paired rounds, order alternating (bench/ab.py).
bench-ab: install
	$(PY) -m bench.ab --against $(AGAINST) $(if $(AGAINST_COMMAND),--against-command '$(AGAINST_COMMAND)')

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
