"""vLLM's own ModelConfig and prompt-length check for the opt-in vLLM tests (`make test-vllm`), without a GPU.

A tiny 2-layer model is described by a config.json alone (no weights, no tokenizer files): vLLM builds its real
ModelConfig from it offline, and `refuses` runs vLLM's own InputProcessor length check against that config, so the
stand-in engines of the tests refuse exactly the prompts a real engine would.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ARCHITECTURES = {
    "generate": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
    "pooling": {"architectures": ["Qwen2ForProcessRewardModel"], "model_type": "qwen2", "num_labels": 2},
}


def model_config(folder: Path, runner: str, max_model_len: int) -> Any:
    """vllm.config.ModelConfig of a tiny model for `runner` ("generate", or "pooling": a Qwen2 PRM)."""
    from vllm.config import ModelConfig

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        **ARCHITECTURES[runner], "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 32, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6, "torch_dtype": "float32",
    }))  # fmt: skip
    return ModelConfig(model=str(folder), tokenizer=str(folder), skip_tokenizer_init=True, runner=runner,
                       max_model_len=max_model_len)  # fmt: skip


def refuses(config: Any, num_tokens: int) -> str | None:
    """vLLM's own InputProcessor verdict on a prompt of `num_tokens` tokens: its error message, or None."""
    from vllm.v1.engine.input_processor import InputProcessor

    processor = SimpleNamespace(skip_prompt_length_check=False, model_config=config, supports_mm_inputs=False,
                                mm_encoder_cache_size=0)  # fmt: skip
    try:
        InputProcessor._validate_prompt_len(processor, num_tokens, "decoder")
    except Exception as exc:  # noqa: BLE001 - VLLMValidationError, whatever vLLM raises
        return str(exc)
    return None
