# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up themselves, idempotently.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.talk-installed
# A local CPU build of torch is installed first when the venv has no torch; without this pin pip would pull a
# multi-GB CUDA build as a dependency of lightning/transformers.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m talk.demo

test: setup
	$(VENV)/bin/pytest tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf outputs .pytest_cache
