"""Scale out on Ray: chunks of problems are sharded over long-lived actors, each holding one loaded backend.

An actor is a `tteval.engine_host.EngineHost`: it loads its engine once (a llama.cpp model per CPU actor; a vLLM engine per
GPU actor, tensor-parallel inside the actor if asked) and serves every chunk, every round and every run of a sweep
sent to it. Results stream back to the driver, which files them in the same run folder as a local run, so resume
works the same way. More actors than the cluster has CPUs or GPUs for is refused in one line before any is made
(Ray would otherwise wait for them forever), and actor start-up has a deadline (TTEVAL_RAY_START_TIMEOUT_S).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from tteval.bounds import env_seconds
from tteval.errors import TtevalError, first_line
from tteval.config import RunConfig
from tteval.engine_host import Chunk, ChunkResult, EngineHost


START_TIMEOUT_S = 900.0  # an actor loads its engine within this (a large vLLM model takes minutes)


class RayEngines:
    """A fixed set of actors; `map` keeps each busy with one chunk and yields results as they finish."""

    def __init__(self, config: RunConfig, num_actors: int, address: str | None = None, gpus_per_actor: float = 0):
        try:
            import ray
        except ImportError:
            raise TtevalError("--ray needs Ray: pip install 'tteval[ray]'") from None
        self.ray = ray
        timeout = env_seconds("TTEVAL_RAY_START_TIMEOUT_S", START_TIMEOUT_S)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = max(num_actors, 1)
            try:
                ray.init(**kwargs)
            except Exception as exc:  # ray raises ConnectionError and several of its own types
                raise TtevalError(f"cannot start or reach Ray at {address or 'local'}: {exc}") from None
        check_resources(ray.cluster_resources(), num_actors, gpus_per_actor, address or "local")
        actor = ray.remote(num_cpus=1, num_gpus=gpus_per_actor)(EngineHost)
        self.actors = [actor.remote(config) for _ in range(num_actors)]
        refs = [a.describe.remote() for a in self.actors]
        try:
            described = ray.get(refs, timeout=timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:  # the engine failed to load
            self.close()
            raise TtevalError(f"a Ray worker could not start its backend: {_cause(exc)}") from None
        except ray.exceptions.GetTimeoutError:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            self.close()
            raise TtevalError(f"{len(ready)} of {num_actors} Ray actors started within {timeout:g} s (the others wait for"
                              " resources the cluster does not free, or load slowly: set TTEVAL_RAY_START_TIMEOUT_S)"
                              ) from None  # fmt: skip
        self._described = {**described[0], "engines": [e for d in described for e in d["engines"]]}

    def describe(self) -> dict[str, Any]:
        return {**self._described, "ray_actors": len(self.actors)}

    def map(self, config: RunConfig, chunks: Sequence[Chunk]) -> Iterator[ChunkResult]:
        """Keep every actor busy with one chunk; yield results as they finish (the driver files them in any order)."""
        ray = self.ray
        pending: dict[Any, Any] = {}
        queue = list(chunks)
        free = list(self.actors)
        while queue or pending:
            while queue and free:
                a = free.pop()
                pending[a.process.remote(config, queue.pop(0))] = a
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                free.append(pending.pop(ref))
                try:
                    yield ray.get(ref)
                except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
                    raise TtevalError(f"a Ray worker failed: {_cause(exc)}") from None

    def close(self) -> list[str]:
        """Close every actor's engine (their log lines: GPU memory back?) and end the actors."""
        notes: list[str] = []
        for a in self.actors:
            try:
                notes += self.ray.get(a.close.remote(), timeout=120) or []
            except Exception:  # noqa: BLE001 - an actor that is gone or stuck is killed below either way
                pass
            self.ray.kill(a)
        self.actors = []
        return notes


def check_resources(total: dict[str, float], num_actors: int, gpus_per_actor: float, where: str) -> None:
    """Refuse, in one line, more actors than the cluster has CPUs or GPUs for: Ray would wait for them forever."""
    for name, per_actor, option in (("GPU", gpus_per_actor, " (or less --tensor-parallel)"), ("CPU", 1, "")):
        need, have = num_actors * per_actor, float(total.get(name, 0))
        if need > have:
            raise TtevalError(f"--ray-actors {num_actors} need {need:g} {name}s ({per_actor:g} per actor), but the Ray"
                              f" cluster at {where} has {have:g}: use fewer actors{option}")  # fmt: skip


def _cause(exc: BaseException) -> str:
    """The first line of what went wrong inside a Ray actor."""
    return first_line(getattr(exc, "cause", None) or exc)
