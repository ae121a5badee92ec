# Two commands set up and run everything on a machine with only python3 and make:
#   make demo   - a full migration of a seeded sandbox organization (local moto, embedded Prefect)
#   make test   - lint, format check and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Embedded Prefect keeps its database and results here, not in ~/.prefect.
export PREFECT_HOME ?= $(CURDIR)/.iamc/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING
# A loaded machine misses Prefect's default 20 s for its temporary server to start.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: demo test lint bytecode bench ui screenshots lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Environments that set PYTHONDONTWRITEBYTECODE (this machine's does) would have every process
# (test workers, CLI children, each Prefect flow run of a worker) compile our modules from
# source again, ~0.35 CPU-s each; compiled here once, they are read from __pycache__ (Python
# recompiles, in memory, a module whose source is newer).
SOURCES := iamc domain flows tasks state engine console scanner stages sandbox bench migrations tests
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 $(SOURCES)

demo: $(STAMP) bytecode
	$(BIN)/iamc demo $(if $(TARGET),--target $(TARGET))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Eight test processes on two cores: most end-to-end tests wait on the sandbox, a Prefect server,
# a worker or a CLI child, and the others use the CPU meanwhile (one module per process: its
# fixtures), handed out longest first (tests/conftest.py, collection order). Measured on this
# 2-core machine: 651 s with four, 586 s with six (the CPU ~90% busy either way); after the
# key scan, workloads and verify went to the pool too, 629 s with six and 608 s with eight.
test: lint bytecode
	$(BIN)/pytest -n 8 --dist loadfile --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

# A local Prefect server and UI on http://127.0.0.1:4200, a seeded sandbox AWS, and the
# runbook's deployments served to it (SPEC=path/to/spec.toml to serve your own migration).
ui: $(STAMP)
	$(BIN)/iamc ui $(if $(SPEC),--spec $(SPEC) --no-sandbox)

# The README's pictures of the UI, from a real run against the sandbox (needs Debian's chromium).
screenshots: $(STAMP)
	$(BIN)/python -m iamc.screenshots docs

bench: $(STAMP) bytecode
	$(BIN)/python -m bench $(or $(BENCH_ARGS),all)

# Re-pin every dependency from a fresh resolve of pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check '.[dev]'
	{ echo '# Pinned versions of every dependency (pip freeze of a working .venv); make uses it as a pip constraints file.'; \
	  echo '# Regenerate: make lock'; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^iam-centralize'; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .iamc .pytest_cache .ruff_cache
