#!/usr/bin/env bash
# Opt-in vLLM tests, backend and PRM scorer (`make test-vllm`): a separate venv with vLLM (about 9 GB, several
# minutes the first time) and the project, then the tests marked `vllm`. They run on vLLM's own classes, no GPU.
# Env: VENV_VLLM (default .venv-vllm), PYTHON (default python3); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_VLLM="${VENV_VLLM:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV_VLLM/bin/python" ]; then
  "$PYTHON" -m venv "$VENV_VLLM"
  "$VENV_VLLM/bin/pip" install --quiet --upgrade pip
fi
# (Re)install when the venv is new or pyproject.toml changed since the last install.
stamp="$VENV_VLLM/.tteval-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV_VLLM/bin/pip" install --quiet -e '.[test,vllm]'
  touch "$stamp"
fi
# transformers reads the GPU smoke test's GGUF with gguf and accelerate (its model-making step is tested here, on CPU)
"$VENV_VLLM/bin/python" -c "import gguf, accelerate" 2>/dev/null || "$VENV_VLLM/bin/pip" install --quiet gguf accelerate
# -n 0: one process (pyproject's addopts spread tests over xdist workers; each vLLM test builds an engine of its own)
exec "$VENV_VLLM/bin/python" -m pytest -q -n 0 -m vllm tests/test_vllm_backend.py tests/test_prm.py tests/test_gpu_smoke_script.py tests/test_cli_ux.py "$@"
