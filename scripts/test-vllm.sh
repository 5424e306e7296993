#!/usr/bin/env bash
# Opt-in: install vLLM (about 9 GB) into .venv-vllm and run the vLLM backend tests built from vLLM's own classes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-vllm/bin/python ]; then
  python3 -m venv .venv-vllm
  .venv-vllm/bin/pip install --quiet --upgrade pip
fi
.venv-vllm/bin/pip install --quiet vllm pytest hypothesis -e .
.venv-vllm/bin/python -m pytest -q -m vllm tests/test_vllm_backend.py
