# hostauth: `make run` serves on an embedded PostgreSQL; `make test` runs the
# test suite. Both install what they need into .venv first.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install gen check-gen lint breaking test run bench bench-rewrap clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Regenerate gen/ from proto/ (local plugins only; see buf.gen.yaml).
gen: install
	buf generate

# Fails when gen/ is not exactly what `make gen` produces from proto/.
check-gen: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	buf generate --output "$$tmp" && \
	diff -r -x __pycache__ gen "$$tmp/gen" && echo "gen/ is up to date"

lint: install
	buf lint
	ruff check server tests tools bench
	ruff format --check server tests tools bench
	mypy server bench

# Wire compatibility of proto/ against the main branch.
breaking: install
	buf breaking --against '.git#branch=main'

test: install check-gen
	$(PY) -m pytest -q

run: install
	$(PY) -m server serve --dev

# The service under load next to its ceilings (docs/benchmarks.md); installs
# h2load and wrk from Debian's packages when missing.
bench: install
	$(PY) -m bench.service

# Online rewrap rows/s next to a plain batched UPDATE of the same rows.
bench-rewrap: install
	$(PY) -m bench.rewrap

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
