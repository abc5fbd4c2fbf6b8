# One command for every check: `make check` (CI runs exactly this via .ci/run).
VENV ?= .venv
PY ?= python3.11
# The suite on two pytest-xdist workers, each with its own SQLite files and PostgreSQL database
# (tests/conftest.py); the tests of one module-scoped Chromium stay on one worker.
PYTEST_WORKERS ?= -n 2 --dist loadgroup
EXAMPLE_PLUGIN = examples/warden-example-plugin

.PHONY: check lint test bench dev

check: $(VENV)/.installed
	bash scripts/ensure-services
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict bot handlers storage devslack
	$(VENV)/bin/pytest $(PYTEST_WORKERS) tests $(EXAMPLE_PLUGIN)/tests

# The example plugin is installed beside Warden, as a third party's would be: its tests and
# tests/test_plugins.py (its tool listed by `warden tools`, paging through Slack) need it.
$(VENV)/.installed: pyproject.toml $(EXAMPLE_PLUGIN)/pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	$(VENV)/bin/pip install --quiet -e $(EXAMPLE_PLUGIN)
	touch $@

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/ack_latency.py

dev: $(VENV)/.installed
	$(VENV)/bin/warden dev
