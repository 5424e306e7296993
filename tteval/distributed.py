"""Scale out on Ray: chunks of problems are sharded over long-lived actors, each holding one loaded backend.

An actor is a `tteval.workers.Worker`: it loads its engine once (a llama.cpp model per CPU actor; a vLLM engine per
GPU actor, tensor-parallel inside the actor if asked) and serves every chunk, every round and every run of a sweep
sent to it. Results stream back to the driver, which files them in the same run folder as a local run, so resume
works the same way.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from tteval.errors import TtevalError, first_line
from tteval.workers import Chunk, ChunkResult, Worker


class RayWorkers:
    """A fixed set of actors; `map` keeps each busy with one chunk and yields results as they finish."""

    def __init__(self, config_dict: dict[str, Any], num_actors: int, address: str | None = None, gpus_per_actor: float = 0):
        try:
            import ray
        except ImportError:
            raise TtevalError("--ray needs Ray: pip install 'tteval[ray]'") from None
        self.ray = ray
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
        actor = ray.remote(num_cpus=1, num_gpus=gpus_per_actor)(Worker)
        self.actors = [actor.remote(config_dict) for _ in range(num_actors)]
        try:
            described = ray.get([a.describe.remote() for a in self.actors])
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:  # the engine failed to load
            self.close()
            raise TtevalError(f"a Ray worker could not start its backend: {_cause(exc)}") from None
        self._described = {**described[0], "engines": [e for d in described for e in d["engines"]]}

    def describe(self) -> dict[str, Any]:
        return {**self._described, "ray_actors": len(self.actors)}

    def map(self, config_dict: dict[str, Any], chunks: Sequence[Chunk]) -> Iterator[ChunkResult]:
        """Keep every actor busy with one chunk; yield results as they finish (the driver files them in any order)."""
        ray = self.ray
        pending: dict[Any, Any] = {}
        queue = list(chunks)
        free = list(self.actors)
        while queue or pending:
            while queue and free:
                a = free.pop()
                pending[a.process.remote(config_dict, queue.pop(0))] = a
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                free.append(pending.pop(ref))
                try:
                    yield ray.get(ref)
                except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
                    raise TtevalError(f"a Ray worker failed: {_cause(exc)}") from None

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.get(a.close.remote(), timeout=30)
            except Exception:
                pass
            self.ray.kill(a)
        self.actors = []


def _cause(exc: BaseException) -> str:
    """The first line of what went wrong inside a Ray actor."""
    return first_line(getattr(exc, "cause", None) or exc)
