"""The backends by name: how each is built (imported lazily: vLLM is optional and heavy), which of its settings
change the samples, how it checks its model and options, and its engine traits. The only place that tells
backends apart by name."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from tteval.backends.plugin import is_plugin, load_factory, make_plugin_backend, option_keys
from tteval.errors import TtevalError

if TYPE_CHECKING:
    from tteval.backends.base import Backend
    from tteval.config import RunConfig


@dataclass(frozen=True)
class BackendSpec:
    """One backend: `factory` builds it from a config, `model_file` checks its model (a local file's path for the
    provenance, else None), `check` refuses settings it cannot take."""

    name: str
    factory: Callable[[RunConfig], Backend]
    identity: tuple[str, ...]  # BackendConfig fields that change the samples (hashed into the run id)
    batch_problems: Callable[[int], int]  # default problems per chunk for a pool of n
    model_file: Callable[[RunConfig], str | None] = lambda config: None
    check: Callable[[RunConfig], None] = lambda config: None
    seeded_engine: bool = False  # the engine is built with the run seed: runs of other seeds need another engine
    pooling: bool = False  # can host a process reward model beside the policy (vLLM's pooling API)
    gpus_per_engine: Callable[[RunConfig], float] = lambda config: 0
    model_args: Callable[[], set[str]] | str = "it takes no --model-args"  # the keys it takes, or why none
    gen_kwargs: Callable[[], set[str]] | str = "it takes no --gen-kwargs"  # the sampling keys it takes, or why none


def _llamacpp(config: RunConfig) -> Backend:
    from tteval.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(model=config.model, **(config.backend.model_args or {}))


def _llamacpp_model(config: RunConfig) -> str | None:
    from tteval.backends.llamacpp import resolve_model_path

    return resolve_model_path(config.model)  # fail on a missing model before a run folder is made


def _vllm(config: RunConfig) -> Backend:
    from tteval.backends.vllm import VLLMBackend

    share = 0.5 if config.verifier.name == "prm" else 0.9  # the PRM's engine takes 0.4 of the same GPU
    engine_args = {"gpu_memory_utilization": share, **(config.backend.model_args or {})}
    return VLLMBackend(model=config.model, seed=config.sampling.seed, tensor_parallel_size=config.backend.tensor_parallel,
                       **engine_args)  # fmt: skip


def _openai(config: RunConfig) -> Backend:
    from tteval.backends.openai import OpenAIBackend

    return OpenAIBackend(base_url=str(config.backend.base_url), model=config.model,
                         max_concurrency=config.execution.max_concurrency, timeout_s=config.execution.request_timeout,
                         chat_template=config.backend.chat_template)  # fmt: skip


def _openai_check(config: RunConfig) -> None:
    if not config.backend.base_url:
        raise TtevalError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")


def _llamacpp_args() -> set[str]:
    from tteval.backends.llamacpp import LlamaCppBackend

    return set(inspect.signature(LlamaCppBackend.__init__).parameters) - {"self", "model"}


def _vllm_engine_args() -> set[str]:
    from tteval.backends.vllm import import_vllm

    return {f.name for f in dataclasses.fields(import_vllm().EngineArgs)}


def _vllm_sampling_fields() -> set[str]:
    from tteval.backends.vllm import import_vllm

    cls = import_vllm().SamplingParams
    names = getattr(cls, "__struct_fields__", None)  # a msgspec Struct in vLLM >= 0.6
    if names is None:
        names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(
            inspect.signature(cls).parameters)  # fmt: skip
    return set(names)


# the OpenAI API's sampling fields beyond tteval's own, and the extra ones vLLM's and llama.cpp's servers take
OPENAI_GEN_KWARGS = ("frequency_penalty", "presence_penalty", "logit_bias", "stop", "top_k", "min_p",
                     "repetition_penalty", "min_tokens", "stop_token_ids", "ignore_eos", "skip_special_tokens",
                     "spaces_between_special_tokens", "include_stop_str_in_output", "length_penalty")  # fmt: skip

BACKENDS: dict[str, BackendSpec] = {
    "llamacpp": BackendSpec("llamacpp", _llamacpp, ("model_args",), lambda n: max(1, 16 // n),
                            model_file=_llamacpp_model, model_args=_llamacpp_args,
                            gen_kwargs="the llamacpp backend samples with temperature and top-p only; use the vllm or "
                            "openai backend for other sampling settings"),
    "vllm": BackendSpec("vllm", _vllm, ("tensor_parallel", "model_args"), lambda n: 256, seeded_engine=True, pooling=True,
                        gpus_per_engine=lambda config: config.backend.tensor_parallel, model_args=_vllm_engine_args,
                        gen_kwargs=_vllm_sampling_fields),
    "openai": BackendSpec("openai", _openai, ("base_url", "chat_template", "model_args"), lambda n: 32,
                          check=_openai_check, gen_kwargs=lambda: set(OPENAI_GEN_KWARGS),
                          model_args="the openai backend starts no engine (the server owns the model); start the "
                          "server with the arguments instead"),
}  # fmt: skip


def backend_spec(name: str) -> BackendSpec:
    """The backend called `name` (or a `module:factory` plug-in), or a one-line error naming the choices."""
    if is_plugin(name):
        load_factory(name)  # a plug-in that cannot be imported fails before a run folder is made
        return BackendSpec(name, lambda config: make_plugin_backend(name, config), ("model_args",),
                           lambda n: max(1, 16 // n), model_args=lambda: option_keys(name, "model_args"),
                           gen_kwargs=lambda: option_keys(name, "gen_kwargs"))  # the keys its factory lists
    try:
        return BACKENDS[name]
    except KeyError:
        raise TtevalError(f"unknown backend '{name}'; choose one of: {', '.join(BACKENDS)}") from None


def make_backend(config: RunConfig) -> Backend:
    """The configured backend behind the generation cache (unless --no-cache)."""
    backend = backend_spec(config.backend.name).factory(config)
    if not config.execution.cache:
        return backend
    from tteval.cache import CachedBackend

    return CachedBackend(backend)


def engine_key(config: RunConfig) -> tuple:
    """What decides which loaded engine a run can use: runs with equal keys share one engine host."""
    spec = backend_spec(config.backend.name)
    b = config.backend
    return (b.name, config.model, b.base_url, b.tensor_parallel, config.execution.cache,
            config.sampling.seed if spec.seeded_engine else None, tuple(sorted((b.model_args or {}).items())))  # fmt: skip


def default_batch_problems(config: RunConfig) -> int:
    """Problems per backend call: --batch-problems, else the backend's default for the pool size."""
    return config.execution.batch_problems or backend_spec(config.backend.name).batch_problems(config.sampling.n)
