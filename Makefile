# Two commands do all set-up: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m rllib_hatrpo.train $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check rllib_hatrpo tests
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check rllib_hatrpo tests

clean:
	rm -rf $(VENV)
