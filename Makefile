# One command for every check: `make check` (CI runs exactly this via .ci/run).
VENV ?= .venv
PY ?= python3.11

.PHONY: check lint test bench dev

check: $(VENV)/.installed
	bash scripts/ensure-services
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict bot handlers storage devslack
	$(VENV)/bin/pytest

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/ack_latency.py

dev: $(VENV)/.installed
	$(VENV)/bin/warden dev
