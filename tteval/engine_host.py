"""The engine host: one loaded backend (with its graders and model-based scorer) that turns chunks of problems
into graded, scored sample records.

An `EngineHost` loads its backend once and serves chunks of every run that uses the same engine
(`tteval.backends.registry.engine_key`), so every round of a multi-round strategy and every run of a sweep reuse it.
The same class is the body of a Ray actor (`tteval.distributed`), so local and sharded runs produce the same records.
How a chunk is generated is the strategy's (`tteval.strategies.registry`); this module only grades and scores it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from tteval.backends.base import FAILED_FINISH_REASONS, Backend, Completion
from tteval.backends.registry import engine_key, make_backend
from tteval.config import RunConfig
from tteval.graders.grading import Grader
from tteval.strategies.registry import strategy_for
from tteval.tasks import Problem, Task, load_task, with_fewshot
from tteval.verifiers.registry import make_scorer, scorer_identity

ChunkResult = tuple[list[dict[str, Any]], dict[str, float], dict[str, int]]


@dataclass(frozen=True)
class Chunk:
    """Problems generated together in one backend call, each from its own sample offset (rounds of PassUntil)."""

    problems: tuple[Problem, ...]
    offsets: tuple[int, ...]


class EngineHost:
    """A loaded backend plus graders and scorer, serving chunks of every run with the same engine key."""

    def __init__(self, config: RunConfig):
        self.key = engine_key(config)
        self._graders: dict[tuple, tuple[Task, Grader]] = {}  # a task's spec and grader, loaded once
        self._grader(config)[1].start()  # its worker imports math-verify while the backend loads the model
        try:
            self.backend: Backend = make_backend(config)
        except BaseException:
            for _, grader in self._graders.values():  # the worker started above
                grader.close()
            raise
        self._scorers: dict[tuple, Any] = {}  # a PRM holds an engine of its own: load it once too
        # names this loaded engine in run.json, so one can check which runs of a sweep shared it
        self.engine_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def describe(self) -> dict[str, Any]:
        params = getattr(self.backend, "model_params", None)  # the policy's parameter count, where the engine knows it
        return {"name": self.backend.name, "model": self.backend.model, "engines": [self.engine_id],
                **({"model_params": params} if params else {})}  # fmt: skip

    def process(self, config: RunConfig, chunk: Chunk) -> ChunkResult:
        """Generate, grade and score one chunk; return its records, timings and the backend usage it cost."""
        if engine_key(config) != self.key:
            raise ValueError("an EngineHost only serves runs with its own engine key")
        task, grader = self._grader(config)
        u = self.backend.usage
        before = (u.prompt_tokens, u.completion_tokens, u.calls)
        timings = {"generation_s": 0.0, "grading_s": 0.0}
        skey = (json.dumps(scorer_identity(config), sort_keys=True), config.sampling.seed)
        if skey not in self._scorers:
            self._scorers[skey] = make_scorer(config, self.backend)
        scorer = self._scorers[skey]
        records = chunk_records(config, task, chunk, self.backend, grader, scorer, timings)
        usage = {"prompt_tokens": u.prompt_tokens - before[0], "completion_tokens": u.completion_tokens - before[1],
                 "calls": u.calls - before[2]}  # fmt: skip
        return records, timings, usage

    def _grader(self, config: RunConfig) -> tuple[Task, Grader]:
        """The task's spec and grader for `config`, loaded once per (task, data, workers, few-shot)."""
        ex = config.execution
        gkey = (config.task, ex.tasks_dir, ex.workers, config.num_fewshot, config.data_source)
        if gkey not in self._graders:
            tasks_dir = Path(ex.tasks_dir) if ex.tasks_dir else None
            task = with_fewshot(load_task(config.task, tasks_dir), config.num_fewshot, config.data_source, tasks_dir)
            self._graders[gkey] = (task, Grader(task, workers=ex.workers))
        return self._graders[gkey]

    def close(self) -> list[str]:
        """Release graders, scorers and the backend; the log lines of those that have one (GPU memory back?)."""
        for _, grader in self._graders.values():
            grader.close()
        notes = [getattr(scorer, "close", lambda: None)() for scorer in self._scorers.values()]
        self._graders, self._scorers = {}, {}
        notes.append(self.backend.close())
        return [n for n in notes if n]


class LocalEngine:
    """One EngineHost in this process; `map` processes chunks in order (the same interface as RayEngines)."""

    def __init__(self, config: RunConfig):
        self.host = EngineHost(config)

    def describe(self) -> dict[str, Any]:
        return self.host.describe()

    def map(self, config: RunConfig, chunks: Sequence[Chunk]) -> Iterator[ChunkResult]:
        for chunk in chunks:
            yield self.host.process(config, chunk)

    def close(self) -> list[str]:
        return self.host.close()


def sample_records(problem: Problem, completions: list, verdicts: list, offset: int = 0,
                   task: Task | None = None, prompt_format: str = "chat") -> list[dict[str, Any]]:  # fmt: skip
    """One samples.jsonl record per candidate (schema in README.md, plus compute and grading detail), with the
    problem's question, prompt hash and gold answer when `task` is given."""
    about = task.provenance(problem, prompt_format) if task is not None else {}
    return [
        {
            "task_id": problem.task_id,
            "sample_index": offset + i,
            "completion": c.text,
            "answer": v.answer,
            "correct": v.correct and c.finish_reason not in FAILED_FINISH_REASONS,  # a failed request is wrong
            "num_tokens": c.num_tokens,
            "logprob": c.logprob,
            "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens,
            "answer_class": v.answer_class,
            "scores": {},
            "grading": v.detail,
            **about,
        }
        for i, (c, v) in enumerate(zip(completions, verdicts))
    ]


def chunk_records(config: RunConfig, task: Task, chunk: Chunk, backend: Backend, grader: Grader, scorer: Any,
                  timings: dict[str, float]) -> list[dict[str, Any]]:  # fmt: skip
    """Generate one chunk by the run's strategy, grade it, and score it with the run's verifier."""
    strategy = strategy_for(config)
    batch = list(chunk.problems)
    t0 = time.perf_counter()
    outputs, extra = strategy.run_chunk(config, task, batch, chunk.offsets, backend, scorer)
    timings["generation_s"] = round(timings["generation_s"] + time.perf_counter() - t0, 3)
    t1 = time.perf_counter()
    verdicts = grader.grade(batch, [[c.text for c in out] for out in outputs])
    timings["grading_s"] = round(timings["grading_s"] + time.perf_counter() - t1, 3)
    if config.verifier.name != "none" and strategy.scores_pool:
        t2 = time.perf_counter()
        questions = [task.messages(p)[-1][1] for p in batch]
        keys = [[f"{p.task_id}#{offset + i}" for i in range(len(out))]
                for p, out, offset in zip(batch, outputs, chunk.offsets)]  # fmt: skip
        _score_pool(questions, outputs, extra, scorer, keys)
        timings["verification_s"] = round(timings.get("verification_s", 0.0) + time.perf_counter() - t2, 3)
    records = []
    for p, out, v, ex, offset in zip(batch, outputs, verdicts, extra, chunk.offsets):
        for r, e in zip(sample_records(p, out, v, offset, task, config.prompt_format), ex):
            r.update(e)
            records.append(r)
    return records


def _score_pool(questions: list[str], outputs: list[list[Completion]], extra: list[list[dict]], scorer,
                keys: list[list[str]]) -> None:  # fmt: skip
    """Score every candidate with the run's model-based verifier, in one batched scorer call; `keys` ("task_id#
    sample_index") seed each candidate's verification, so it does not depend on the batch."""
    items = [(q, c.text) for q, out in zip(questions, outputs) for c in out]
    scored = iter(scorer.score(items, keys=[k for ks in keys for k in ks]))
    for ex in extra:
        for j in range(len(ex)):
            s = next(scored)
            ex[j] = {"scores": {scorer.name: s.score}, "verifier_tokens": s.tokens}
            if s.chain_scores:
                ex[j]["verifier_chain_scores"] = s.chain_scores
            if getattr(s, "step_scores", None) is not None:
                ex[j]["step_scores"] = s.step_scores
            if getattr(s, "failed", None):
                ex[j]["score_failed"] = s.failed
