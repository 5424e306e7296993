# The README's two quick-start commands are `make run` and `make test`; CI runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-vllm bench clean

$(BIN)/tteval: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/tteval

setup: $(BIN)/tteval

run: setup
	$(BIN)/tteval run

test: setup
	$(BIN)/python -m pytest -q

test-vllm:
	bash scripts/test-vllm.sh

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
