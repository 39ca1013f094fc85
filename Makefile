# Two commands do all set-up: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The experiment `make train` runs; e.g. make train CONFIG=tune_configs/happo_ant_4x2.yaml
CONFIG ?= tune_configs/hatrpo_halfcheetah_2x3_quick.yaml

.PHONY: train test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(VENV)/bin/rllib-hatrpo train $(CONFIG) $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check rllib_hatrpo tests benchmarks
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check rllib_hatrpo tests benchmarks

clean:
	rm -rf $(VENV)
