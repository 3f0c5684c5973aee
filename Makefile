# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch (on the dev/CI machines it is a local wheel); override for CUDA.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.gzoo-installed

.PHONY: demo test lint typecheck check venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m gzoo demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check gzoo layers zoo tests benchmarks .ci

# mypy on the installed module names (gzoo/, layers/, zoo/ → gzoo, gzoo.layers, gzoo.zoo)
typecheck: $(STAMP)
	$(PY) .ci/typecheck.py

# what CI runs: the tests, the lint and the type check
check: test lint typecheck

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
