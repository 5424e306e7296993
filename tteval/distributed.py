"""Scale out on Ray: chunks of problems are sharded over long-lived actors, each holding one loaded backend.

An actor loads its engine once (a llama.cpp model per CPU actor; a vLLM engine per GPU actor, tensor-parallel
inside the actor if asked) and serves every chunk, every round and every budget sent to it. Results stream back
to the driver, which files them in the same run folder as a local run, so resume works the same way.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from tteval.errors import TtevalError


class _Worker:
    """The body of one Ray actor: a backend, a grader and (if needed) a scorer, built once from the config."""

    def __init__(self, config_dict: dict[str, Any]):
        from tteval.grading import Grader
        from tteval.runner import RunConfig, make_backend, make_scorer
        from tteval.tasks import load_task

        self.config = RunConfig.from_dict(config_dict)
        self.task = load_task(self.config.task, self.config.tasks_dir)
        self.backend = make_backend(self.config)
        self.grader = Grader(self.task, workers=1)
        self.scorer = make_scorer(self.config, self.backend)

    def process(self, batch: list) -> tuple[list[dict], dict[str, float], dict[str, int]]:
        from tteval.runner import _chunk_records

        timings = {"generation_s": 0.0, "grading_s": 0.0}
        before = (self.backend.usage.prompt_tokens, self.backend.usage.completion_tokens, self.backend.usage.calls)
        records = _chunk_records(self.config, self.task, batch, self.backend, self.grader, self.scorer, timings)
        u = self.backend.usage
        usage = {"prompt_tokens": u.prompt_tokens - before[0], "completion_tokens": u.completion_tokens - before[1],
                 "calls": u.calls - before[2]}  # fmt: skip
        return records, timings, usage

    def close(self) -> None:
        self.grader.close()
        self.backend.close()


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
        actor = ray.remote(num_cpus=1, num_gpus=gpus_per_actor)(_Worker)
        self.actors = [actor.remote(config_dict) for _ in range(num_actors)]

    def map(self, chunks: Sequence[list]) -> Iterator[tuple[list[dict], dict[str, float], dict[str, int]]]:
        ray = self.ray
        pending: dict[Any, Any] = {}
        queue = list(chunks)
        free = list(self.actors)
        while queue or pending:
            while queue and free:
                a = free.pop()
                pending[a.process.remote(queue.pop(0))] = a
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                free.append(pending.pop(ref))
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise TtevalError(f"a Ray worker failed: {str(exc.cause) if exc.cause else exc}") from None

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.get(a.close.remote(), timeout=30)
            except Exception:
                pass
            self.ray.kill(a)
        self.actors = []
