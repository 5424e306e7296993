"""The generation step of a run: one loaded backend turns chunks of problems into graded, scored sample records.

A `Worker` holds a backend (loaded once), a grader per task and the model-based scorer; it serves chunks of any
run that uses the same engine, so every round of a multi-round strategy and every run of a sweep reuse it. The
same class is the body of a Ray actor (`tteval.distributed`), so local and sharded runs produce the same records.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from tteval.backends.base import FAILED_FINISH_REASONS, Backend, Completion, Request
from tteval.grading import Grader
from tteval.tasks import Problem, Task, load_task, with_fewshot

ChunkResult = tuple[list[dict[str, Any]], dict[str, float], dict[str, int]]


@dataclass(frozen=True)
class Chunk:
    """Problems generated together in one backend call, each from its own sample offset (rounds of PassUntil)."""

    problems: tuple[Problem, ...]
    offsets: tuple[int, ...]


def engine_key(config: Any) -> tuple:
    """What decides which loaded engine a run can use: runs with equal keys share one Worker."""
    return (config.backend, config.model, config.base_url, config.tensor_parallel, config.cache,
            config.seed if config.backend == "vllm" else None, tuple(sorted((config.model_args or {}).items())))  # fmt: skip


class Worker:
    """A loaded backend plus graders and scorer, serving chunks of every run with the same engine key."""

    def __init__(self, config_dict: dict[str, Any]):
        from tteval.runner import RunConfig, make_backend

        config = RunConfig.from_dict(config_dict)
        self.key = engine_key(config)
        self.backend: Backend = make_backend(config)
        self._graders: dict[tuple, tuple[Task, Grader]] = {}  # a task's spec and grader, loaded once
        self._scorers: dict[tuple, Any] = {}  # a PRM holds an engine of its own: load it once too
        # names this loaded engine in run.json, so one can check which runs of a sweep shared it
        self.engine_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def describe(self) -> dict[str, Any]:
        params = getattr(self.backend, "model_params", None)  # the policy's parameter count, where the engine knows it
        return {"name": self.backend.name, "model": self.backend.model, "engines": [self.engine_id],
                **({"model_params": params} if params else {})}  # fmt: skip

    def process(self, config_dict: dict[str, Any], chunk: Chunk) -> ChunkResult:
        """Generate, grade and score one chunk; return its records, timings and the backend usage it cost."""
        from tteval.runner import RunConfig, make_scorer

        config = RunConfig.from_dict(config_dict)
        if engine_key(config) != self.key:
            raise ValueError("a Worker only serves runs with its own engine key")
        gkey = (config.task, config.tasks_dir, config.workers, config.num_fewshot, config.data_source)
        if gkey not in self._graders:
            tasks_dir = Path(config.tasks_dir) if config.tasks_dir else None
            task = with_fewshot(load_task(config.task, tasks_dir), config.num_fewshot, config.data_source, tasks_dir)
            self._graders[gkey] = (task, Grader(task, workers=config.workers))
        task, grader = self._graders[gkey]
        u = self.backend.usage
        before = (u.prompt_tokens, u.completion_tokens, u.calls)
        timings = {"generation_s": 0.0, "grading_s": 0.0}
        skey = (config.verifier, config.strategy == "particle-filter", config.verifications, config.verifier_max_tokens,
                config.seed, config.prm_model, config.prm_aggregation, config.genrm_mode())  # fmt: skip
        if skey not in self._scorers:
            self._scorers[skey] = make_scorer(config, self.backend)
        scorer = self._scorers[skey]
        records = chunk_records(config, task, chunk, self.backend, grader, scorer, timings)
        usage = {"prompt_tokens": u.prompt_tokens - before[0], "completion_tokens": u.completion_tokens - before[1],
                 "calls": u.calls - before[2]}  # fmt: skip
        return records, timings, usage

    def close(self) -> list[str]:
        """Release graders, scorers and the backend; the log lines of those that have one (GPU memory back?)."""
        for _, grader in self._graders.values():
            grader.close()
        notes = [getattr(scorer, "close", lambda: None)() for scorer in self._scorers.values()]
        self._graders, self._scorers = {}, {}
        notes.append(self.backend.close())
        return [n for n in notes if n]


class LocalWorkers:
    """One Worker in this process; `map` processes chunks in order (the same interface as RayWorkers)."""

    def __init__(self, config_dict: dict[str, Any]):
        self.worker = Worker(config_dict)

    def describe(self) -> dict[str, Any]:
        return self.worker.describe()

    def map(self, config_dict: dict[str, Any], chunks: Sequence[Chunk]) -> Iterator[ChunkResult]:
        for chunk in chunks:
            yield self.worker.process(config_dict, chunk)

    def close(self) -> list[str]:
        return self.worker.close()


def problem_seed(seed: int, task_id: str) -> int:
    """A per-problem sampling seed that depends only on the run seed and the problem id."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def round_request(config: Any, task: Task, problem: Problem, offset: int) -> Request:
    """The request for a problem's samples from `offset` on: the whole pool, or the next PassUntil round."""
    n, seed = config.n, problem_seed(config.seed, problem.task_id)
    if config.strategy == "pass-until":
        size = config.round_len
        n = min(size, config.n - offset)
        if offset:  # round r > 0 gets its own seed; round 0 is the pool a `sample` run would draw first
            seed = problem_seed(config.seed, f"{problem.task_id}#round{offset // size}")
    prompt = {"prompt": task.raw_prompt(problem)} if config.prompt_format == "raw" else {"messages": task.messages(problem)}
    return Request(**prompt, n=n, temperature=config.temperature, top_p=config.top_p,
                   max_tokens=config.token_cap(), stop=task.stop(config.prompt_format), seed=seed, extra=tuple(sorted((config.gen_kwargs or {}).items())))  # fmt: skip


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


def chunk_records(config: Any, task: Task, chunk: Chunk, backend: Backend, grader: Grader, scorer: Any,
                  timings: dict[str, float]) -> list[dict[str, Any]]:  # fmt: skip
    """Generate (pool sampling, a PassUntil round, or particle filtering), grade and score one chunk."""
    batch = list(chunk.problems)
    t0 = time.perf_counter()
    questions = [task.messages(p)[-1][1] for p in batch]
    extra: list[list[dict[str, Any]]]
    if config.strategy == "particle-filter":
        outputs, extra = _particle_filter(config, task, batch, questions, backend, scorer)
    else:
        outputs = backend.generate([round_request(config, task, p, o) for p, o in zip(batch, chunk.offsets)])
        extra = [[{} for _ in out] for out in outputs]
    timings["generation_s"] = round(timings["generation_s"] + time.perf_counter() - t0, 3)
    t1 = time.perf_counter()
    verdicts = grader.grade(batch, [[c.text for c in out] for out in outputs])
    timings["grading_s"] = round(timings["grading_s"] + time.perf_counter() - t1, 3)
    if config.verifier != "none" and config.strategy != "particle-filter":
        t2 = time.perf_counter()
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


def _particle_filter(config: Any, task: Task, batch: list[Problem], questions: list[str], backend: Backend, scorer):
    """Particle filtering (or particle Gibbs) over the chunk: the final particles as completions, plus extras."""
    from tteval.strategies.particle_filter import particle_filter

    prompts = [task.raw_prompt(p) if config.prompt_format == "raw" else backend.apply_chat_template(task.messages(p))
               for p in batch]  # fmt: skip
    results = particle_filter(
        backend, scorer, questions, prompts, config.n, keys=[p.task_id for p in batch], temperature=config.temperature,
        step_tokens=config.pf_step_tokens, max_steps=config.pf_max_steps, softmax_temp=config.pf_softmax_temp,
        seed=config.seed, iterations=config.pf_iterations, max_tokens=config.token_cap(),
    )  # fmt: skip
    outputs = [[Completion(p.text, p.policy_tokens, "stop") for p in r.particles] for r in results]
    extra = [
        [{"scores": {"prm": p.reward}, "selected": j == r.selected, "steps": r.steps, "pf_iterations": r.iterations,
          "problem_policy_tokens": r.policy_tokens, "problem_verifier_tokens": r.verifier_tokens}  # fmt: skip
         for j, p in enumerate(r.particles)]
        for r in results
    ]
    return outputs, extra
