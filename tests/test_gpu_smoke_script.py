"""scripts/gpu-smoke.sh cannot run without a GPU; what can be checked here is.

Its shell is valid bash and refuses a GPU-less machine in one line; its Python part imports without side effects
and holds every check the issue lists; and (opt-in, `make test-vllm`) its model-making step runs on a CPU: the
embedded GGUF becomes a Hugging Face folder and the dummy PRM a config, both of which vLLM's own ModelConfig accepts.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-smoke.sh"


def load_smoke():
    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "scripts" / "gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shell_script_is_valid_bash_and_executable():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert SCRIPT.stat().st_mode & 0o111
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_without_a_gpu_it_says_so_in_one_line():
    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0:
        pytest.skip("a GPU is here: the script would run")
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == "gpu-smoke: no NVIDIA GPU here (nvidia-smi -L failed)"


def test_the_python_part_imports_without_side_effects_and_has_every_check():
    smoke = load_smoke()
    assert smoke.RESULTS == []
    names = {"check_counts", "check_logprobs", "check_greedy", "check_stop", "check_chat_tokens", "check_long_prompt",
             "check_prefix_cache", "check_prm", "check_release", "check_run"}  # fmt: skip
    assert names <= set(vars(smoke))


@pytest.mark.vllm
def test_the_models_are_made_on_a_cpu_and_vllm_accepts_them(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is opt-in: run `make test-vllm`")
    pytest.importorskip("gguf", reason="the GGUF conversion needs gguf (make test-vllm installs it)")
    pytest.importorskip("accelerate", reason="transformers' GGUF loading needs accelerate")
    from transformers import AutoTokenizer
    from vllm.config import ModelConfig

    from tteval.verifiers.prm import STEP_TAG, prm_prompt, prm_steps

    smoke = load_smoke()
    policy, prm = smoke.prepare(tmp_path)
    config = ModelConfig(model=str(policy), max_model_len=512)
    assert config.architectures == ["LlamaForCausalLM"] and config.runner_type == "generate"
    tok = AutoTokenizer.from_pretrained(policy)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    pooling = ModelConfig(model=str(prm), runner="pooling", max_model_len=1024)
    assert pooling.architectures == ["Qwen2ForProcessRewardModel"] and pooling.pooler_config.tok_pooling_type == "STEP"
    prm_tok = AutoTokenizer.from_pretrained(prm)
    assert pooling.get_vocab_size() == len(prm_tok)
    (tag,) = prm_tok.encode(STEP_TAG, add_special_tokens=False)
    ids = prm_tok.encode(prm_prompt(prm_tok, "What is 2 + 3?", prm_steps("a\n\nb", "min")), add_special_tokens=False)
    assert ids.count(tag) == 2
    assert smoke.prepare(tmp_path) == (policy, prm)  # made once, then reused
