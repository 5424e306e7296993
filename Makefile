# The README's two quick-start commands are `make run` and `make test`; CI runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp's native x86 build turns on its AMX kernels on CPUs that have AMX (Sapphire Rapids and later), and those
# crash (SIGSEGV in llama_decode) in VMs that do not grant AMX tile state, as on this project's CI machines. Build
# llama-cpp-python for AVX2 instead: portable across x86-64 machines and plenty for the 135M CPU model.
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
endif
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)

.PHONY: setup run test test-vllm bench clean

$(BIN)/tteval: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,test]'
	touch $(BIN)/tteval

setup: $(BIN)/tteval

# the quick start stays fast: 4 problems (a plain `tteval run` takes the whole task, as lm-eval does)
run: setup
	$(BIN)/tteval run --limit 4

test: setup
	$(BIN)/python -m pytest -q

test-vllm:
	bash scripts/test-vllm.sh

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
