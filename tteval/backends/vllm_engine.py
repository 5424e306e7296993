"""A vLLM engine's life, shared by the generation backend and the PRM: start it, know which prompts it takes, and
shut it down with its GPU memory back (checked with NVML and said in one log line).

Checked against vLLM 0.33.0: `LLM(...).model_config.max_model_len` is the context the engine was started with
(`max_model_len=-1` lets vLLM pick the longest that fits its share of GPU memory, never beyond the model's own);
its InputProcessor refuses an empty prompt, a prompt longer than max_model_len, and, for generation, one of
exactly max_model_len (no room for one output token) -- by raising inside `LLM.generate` / `LLM.encode`, which
aborts every request of the call. `LLM` has no close(): `llm.llm_engine.engine_core.shutdown()` stops the
engine-core process (and with it the GPU memory it holds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import time
from typing import Any

from tteval.errors import TtevalError, first_line

AUTO_MAX_MODEL_LEN = -1  # vLLM: the longest context that fits the engine's share of GPU memory
GIB = 1 << 30
LEAK_TOLERANCE = 1 * GIB  # GPU memory still in use after a shutdown beyond this is reported


def start_engine(vllm: Any, what: str, env: str, **kwargs: Any) -> Any:
    """`vllm.LLM(**kwargs)` with the engine arguments of environment variable `env` (a JSON object) on top, and
    max_model_len auto-fitted unless given; or one TtevalError line naming `what`."""
    kwargs.update(engine_args_from_env(vllm, env))
    if kwargs.get("max_model_len") is None:
        kwargs["max_model_len"] = AUTO_MAX_MODEL_LEN
    try:
        return vllm.LLM(**kwargs)
    except Exception as exc:  # bad model name or path, out of memory, unsupported architecture, ...
        raise TtevalError(f"vLLM could not start {what}: {first_line(exc)}") from exc


def engine_args_from_env(vllm: Any, name: str) -> dict[str, Any]:
    """Extra vLLM engine arguments from environment variable `name` (TTEVAL_VLLM_ARGS for the policy engine,
    TTEVAL_VLLM_PRM_ARGS for the PRM's), e.g. '{"enforce_eager": true, "max_model_len": 4096}'; checked against
    vllm.EngineArgs so a typo is one line, not an engine that starts with it ignored."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        args = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TtevalError(f"{name} must be a JSON object of vLLM engine arguments: {exc.msg} (column {exc.colno})") from None
    if not isinstance(args, dict):
        raise TtevalError(f"{name} must be a JSON object of vLLM engine arguments, got {raw[:60]!r}")
    known = {f.name for f in dataclasses.fields(vllm.EngineArgs)} if dataclasses.is_dataclass(vllm.EngineArgs) else set(args)
    unknown = sorted(set(args) - known)
    if unknown:
        raise TtevalError(f"{name}: not vLLM engine arguments: {', '.join(unknown)}")
    return args


def engine_max_len(engine: Any) -> int | None:
    """The context length (prompt plus output tokens) the engine was started with; None if it does not say."""
    value = getattr(getattr(engine, "model_config", None), "max_model_len", None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def prompt_failure(num_tokens: int, max_len: int | None, pooling: bool = False) -> str | None:
    """Why vLLM would refuse a prompt of `num_tokens` tokens ("empty_prompt", "length_prompt"), or None.

    The same rule as vLLM's InputProcessor: a pooling prompt may fill the context, a generation prompt must leave
    room for at least one output token."""
    if num_tokens == 0:
        return "empty_prompt"
    if max_len is not None and (num_tokens > max_len or (num_tokens == max_len and not pooling)):
        return "length_prompt"
    return None


def shutdown_engine(engine: Any) -> str | None:
    """Stop the engine's core (its process and GPU memory); the first line of what went wrong, if anything did."""
    core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
    stop = getattr(core, "shutdown", None)
    if not callable(stop):
        return None
    try:
        stop()
    except Exception as exc:  # noqa: BLE001 - a failed shutdown is reported, never raised from close()
        return first_line(exc)
    return None


def close_engine(owner: Any, what: str) -> str | None:
    """Close the engine that `owner` (a backend or scorer: `.engine`, `._tokenizer`, `._memory_before`) holds:
    drop its references, shut it down, and return the log line of `release_report` (None if already closed)."""
    engine = owner.engine
    owner.engine = owner._tokenizer = None
    if engine is None:
        return None
    problem = shutdown_engine(engine)
    del engine
    return release_report(what, owner._memory_before, problem)


def gpu_memory_used() -> int | None:
    """Bytes of GPU memory in use on the GPUs this process may use (CUDA_VISIBLE_DEVICES), from NVML; None
    without NVML or a GPU. NVML does not create a CUDA context, so measuring costs no GPU memory itself."""
    try:
        try:
            import pynvml
        except ImportError:
            from vllm.third_party import pynvml
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no NVML, no GPU: memory is simply not measured
        return None
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            wanted = [v.strip() for v in visible.split(",") if v.strip()]
            if all(v.isdigit() for v in wanted):
                handles = [handles[int(v)] for v in wanted if int(v) < len(handles)]
            else:
                handles = [pynvml.nvmlDeviceGetHandleByUUID(v) for v in wanted]
        return sum(int(pynvml.nvmlDeviceGetMemoryInfo(h).used) for h in handles)
    except Exception:  # noqa: BLE001
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def release_report(what: str, before: int | None, problem: str | None = None, wait_s: float = 10.0) -> str:
    """One log line: `what` was shut down, and whether GPU memory is back to what it was before it started.

    Memory is freed when the engine-core process has exited, so it is polled for up to `wait_s` seconds."""
    gc.collect()
    _empty_torch_cache()
    after = gpu_memory_used()
    deadline = time.monotonic() + wait_s
    while before is not None and after is not None and after - before > LEAK_TOLERANCE and time.monotonic() < deadline:
        time.sleep(0.5)
        gc.collect()
        after = gpu_memory_used()
    head = f"{what} shut down" + (f" (shutdown said: {problem})" if problem else "")
    if before is None or after is None:
        return f"{head}; GPU memory not measured (no NVML)"
    if after - before > LEAK_TOLERANCE:
        return (f"warning: {head}, but {(after - before) / GIB:.1f} GiB of GPU memory did not come back "
                f"({after / GIB:.1f} GiB in use, {before / GIB:.1f} GiB before it started)")  # fmt: skip
    return f"{head}; GPU memory back ({after / GIB:.1f} GiB in use, {before / GIB:.1f} GiB before it started)"


def _empty_torch_cache() -> None:
    """Return this process's cached CUDA blocks (an engine run in-process), without creating a CUDA context."""
    import sys

    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_available() and cuda.is_initialized():
        cuda.empty_cache()
