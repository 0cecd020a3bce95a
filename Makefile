# medseg: `make demo` runs the demo study, `make test` runs ruff, mypy, import-linter and pytest.
# Each target creates .venv when it is missing. torch is installed first and pinned, so pip
# takes the CPU build and never pulls a CUDA build through monai.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medseg-installed

.PHONY: install demo test test-quick test-slow bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/medseg run pipelines/demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check medseg tests benchmarks
	$(BIN)/ruff format --check medseg tests benchmarks
	$(BIN)/mypy medseg benchmarks
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

test-quick: lint
	$(BIN)/python -m pytest -q -m "not slow and not integration"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs .mypy_cache .ruff_cache .pytest_cache
