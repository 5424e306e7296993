"""`--model-args` and `--gen-kwargs` (lm-eval's spelling): backend options passed through as key=value pairs.

Keys are checked against what the backend takes before anything starts, so a typo is one line, not an option
silently ignored: vLLM's engine arguments (vllm.EngineArgs) and sampling fields (vllm.SamplingParams), read
lazily since vLLM is optional; llama.cpp's backend constructor; the OpenAI-compatible API's sampling fields.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from tteval.errors import TtevalError

# set by tteval's own options: passing them again would make two sources of one setting
OWN_MODEL_ARGS = {"model": "--model", "seed": "--seed", "tensor_parallel_size": "--tensor-parallel"}
OWN_GEN_KWARGS = {"n": "-n", "temperature": "--temperature", "top_p": "--top-p", "max_tokens": "--max-tokens",
                  "seed": "--seed", "logprobs": "(always on)", "prompt_logprobs": "(not used)"}  # fmt: skip
# the OpenAI API's sampling fields beyond tteval's own, and the extra ones vLLM's and llama.cpp's servers take
OPENAI_GEN_KWARGS = ("frequency_penalty", "presence_penalty", "logit_bias", "stop", "top_k", "min_p",
                     "repetition_penalty", "min_tokens", "stop_token_ids", "ignore_eos", "skip_special_tokens",
                     "spaces_between_special_tokens", "include_stop_str_in_output", "length_penalty")  # fmt: skip


def parse_kv(text: str | None, flag: str) -> dict[str, Any] | None:
    """'a=1,b=true,c=x' -> {'a': 1, 'b': True, 'c': 'x'} as lm-eval reads --model-args; None when not given."""
    if text is None or not text.strip():
        return None
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TtevalError(f"{flag} must be key=value pairs separated by commas, got {item.strip()!r}")
        if key in out:
            raise TtevalError(f"{flag} gives '{key}' twice")
        out[key] = _value(raw.strip())
    return out


def _value(raw: str) -> Any:
    """A value as typed: true/false, none/null, an int, a float, else the string itself."""
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def check_model_args(backend: str, args: dict[str, Any] | None) -> None:
    """Refuse in one line a key the backend's engine constructor does not take."""
    if not args:
        return
    own = sorted(k for k in args if k in OWN_MODEL_ARGS)
    if own:
        raise TtevalError(f"--model-args: {own[0]} is set by {OWN_MODEL_ARGS[own[0]]}")
    if backend == "openai":
        raise TtevalError("--model-args: the openai backend starts no engine (the server owns the model); "
                          "start the server with the arguments instead")  # fmt: skip
    known = _engine_args(backend)
    unknown = sorted(set(args) - known)
    if unknown:
        raise TtevalError(f"--model-args: not {backend} engine arguments: {', '.join(unknown)}")


def check_gen_kwargs(backend: str, kwargs: dict[str, Any] | None) -> None:
    """Refuse in one line a sampling key the backend does not take (or one tteval sets from its own options)."""
    if not kwargs:
        return
    own = sorted(k for k in kwargs if k in OWN_GEN_KWARGS)
    if own:
        raise TtevalError(f"--gen-kwargs: {own[0]} is set by {OWN_GEN_KWARGS[own[0]]}")
    if backend == "llamacpp":
        raise TtevalError("--gen-kwargs: the llamacpp backend samples with temperature and top-p only; "
                          "use the vllm or openai backend for other sampling settings")  # fmt: skip
    known = _sampling_fields() if backend == "vllm" else set(OPENAI_GEN_KWARGS)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TtevalError(f"--gen-kwargs: not {backend} sampling parameters: {', '.join(unknown)}")


def _engine_args(backend: str) -> set[str]:
    if backend == "vllm":
        from tteval.backends.vllm import import_vllm

        vllm = import_vllm()
        return {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    from tteval.backends.llamacpp import LlamaCppBackend

    return set(inspect.signature(LlamaCppBackend.__init__).parameters) - {"self", "model"}


def _sampling_fields() -> set[str]:
    from tteval.backends.vllm import import_vllm

    cls = import_vllm().SamplingParams
    names = getattr(cls, "__struct_fields__", None)  # a msgspec Struct in vLLM >= 0.6
    if names is None:
        names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(
            inspect.signature(cls).parameters)  # fmt: skip
    return set(names)
