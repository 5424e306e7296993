"""`tteval run`: sample a pool of candidates per problem, grade them, and file them in a resumable run folder."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tteval.backends.base import Backend, Request
from tteval.errors import TtevalError
from tteval.grading import Grader
from tteval.results import RunDir, read_json, write_json_atomic
from tteval.tasks import Problem, Task, load_problems, load_task

BACKENDS = ("llamacpp", "vllm", "openai")
STRATEGIES = ("sample", "particle-filter")
VERIFIERS = ("none", "genrm")


@dataclass
class RunConfig:
    """Everything that determines a run's samples; its hash names the run folder, so re-running resumes."""

    task: str = "gsm8k"
    model: str = "smollm2"
    backend: str = "llamacpp"
    strategy: str = "sample"
    n: int = 4
    limit: int | None = 4
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    base_url: str | None = None
    tasks_dir: str | None = None
    data_source: str = "auto"
    batch_problems: int | None = None
    verifier: str = "none"
    verifications: int = 1
    verifier_max_tokens: int = 128
    pf_step_tokens: int = 128
    pf_max_steps: int = 40
    pf_softmax_temp: float = 1.0
    workers: int = 2
    cache: bool = True
    ray: str | None = None  # None: local; "local": a Ray instance on this machine; else a cluster address
    ray_actors: int = 2
    tensor_parallel: int = 1
    # fields below do not change the samples, so they are left out of the run id hash
    out: str = "results"
    _NON_IDENTITY = ("out", "batch_problems", "workers", "tasks_dir", "cache", "ray", "ray_actors")

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise TtevalError(f"unknown backend '{self.backend}'; choose one of: {', '.join(BACKENDS)}")
        if self.strategy not in STRATEGIES:
            raise TtevalError(f"unknown strategy '{self.strategy}'; choose one of: {', '.join(STRATEGIES)}")
        if self.n < 1:
            raise TtevalError(f"-n must be at least 1, got {self.n}")
        if self.max_tokens < 1:
            raise TtevalError(f"--max-tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise TtevalError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise TtevalError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.limit is not None and self.limit < 1:
            raise TtevalError(f"--limit must be at least 1, got {self.limit}")
        if self.batch_problems is not None and self.batch_problems < 1:
            raise TtevalError(f"--batch-problems must be at least 1, got {self.batch_problems}")
        if self.verifier not in VERIFIERS:
            raise TtevalError(f"unknown verifier '{self.verifier}'; choose one of: {', '.join(VERIFIERS)}")
        if self.verifications < 1:
            raise TtevalError(f"--verifications must be at least 1, got {self.verifications}")
        if self.pf_softmax_temp <= 0:
            raise TtevalError(f"--pf-softmax-temp must be > 0, got {self.pf_softmax_temp}")
        if self.ray is not None and self.ray_actors < 1:
            raise TtevalError(f"--ray-actors must be at least 1, got {self.ray_actors}")
        if self.workers < 1:
            raise TtevalError(f"--workers must be at least 1, got {self.workers}")
        if self.backend == "openai" and not self.base_url:
            raise TtevalError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")

    def identity(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._NON_IDENTITY}

    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        model = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.model).name or self.model).strip("-")[:40]
        return f"{self.task}_{model}_{self.strategy}_n{self.n}_{digest}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def problem_seed(seed: int, task_id: str) -> int:
    """A per-problem sampling seed that depends only on the run seed and the problem id."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def make_backend(config: RunConfig) -> Backend:
    """The configured backend behind the generation cache (unless --no-cache)."""
    backend = _raw_backend(config)
    if not config.cache:
        return backend
    from tteval.cache import CachedBackend

    return CachedBackend(backend)


def _raw_backend(config: RunConfig) -> Backend:
    """Instantiate the configured backend (imports are lazy: vLLM is optional and heavy)."""
    if config.backend == "llamacpp":
        from tteval.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model=config.model)
    if config.backend == "vllm":
        from tteval.backends.vllm import VLLMBackend

        return VLLMBackend(model=config.model, seed=config.seed, tensor_parallel_size=config.tensor_parallel)
    from tteval.backends.openai import OpenAIBackend

    return OpenAIBackend(base_url=config.base_url, model=config.model)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("tteval", "numpy", "datasets", "math-verify", "llama_cpp_python", "vllm", "httpx", "typer", "rich"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def default_batch_problems(config: RunConfig) -> int:
    if config.batch_problems:
        return config.batch_problems
    return {"llamacpp": max(1, 16 // config.n), "openai": 32, "vllm": 256}[config.backend]


def open_run(config: RunConfig) -> tuple[RunDir, dict[str, Any]]:
    """Create the run folder, or reopen it to resume when its recorded config matches."""
    run = RunDir(Path(config.out) / config.run_id())
    if run.run_json.exists():
        meta = read_json(run.run_json)
        if meta.get("config", {}).get("identity") != config.identity():
            raise TtevalError(f"{run.path} holds a run with a different configuration; use another --out")
        return run, meta
    meta = {
        "run_id": config.run_id(),
        "config": {**asdict(config), "identity": config.identity()},
        "created": _now(),
        "status": "running",
        "versions": package_versions(),
        "timings": {"generation_s": 0.0, "grading_s": 0.0},
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0},
    }
    write_json_atomic(run.run_json, meta)
    return run, meta


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resume_command(run: RunDir) -> str:
    return f"tteval run --resume {run.path}"


def sample_records(problem: Problem, completions: list, verdicts: list, offset: int = 0) -> list[dict[str, Any]]:
    """One samples.jsonl record per candidate (schema in DESIGN.md, plus compute and grading detail)."""
    records = []
    for i, (c, v) in enumerate(zip(completions, verdicts)):
        records.append(
            {
                "task_id": problem.task_id,
                "sample_index": offset + i,
                "completion": c.text,
                "answer": v.answer,
                "correct": v.correct,
                "num_tokens": c.num_tokens,
                "logprob": c.logprob,
                "finish_reason": c.finish_reason,
                "prompt_tokens": c.prompt_tokens,
                "answer_class": v.answer_class,
                "scores": {},
                "grading": v.detail,
            }
        )
    return records


def execute(config: RunConfig, console: Console | None = None) -> RunDir:
    """Run (or resume) a sampling run and write run.json, samples.jsonl and metrics.json."""
    from tteval.metrics import compute_metrics

    console = console or Console(stderr=True)
    config.validate()
    task = load_task(config.task, Path(config.tasks_dir) if config.tasks_dir else None)
    problems = load_problems(task, config.limit, config.data_source)
    if config.backend == "llamacpp":
        from tteval.backends.llamacpp import resolve_model_path

        resolve_model_path(config.model)  # fail on a missing model before a run folder is made
    run, meta = open_run(config)
    complete = run.drop_incomplete(config.n)
    todo = [p for p in problems if p.task_id not in complete]
    if complete:
        console.print(f"[cyan]resuming[/] {run.path}: {len(problems) - len(todo)}/{len(problems)} problems already done")
    meta["status"] = "running"
    meta.pop("error", None)
    if todo:
        _generate(config, task, problems, complete, run, meta, console)
    samples = run.recover_samples()
    t0 = time.perf_counter()
    metrics = compute_metrics(samples, task=task.name, n=config.n, seed=config.seed)
    meta["timings"]["metrics_s"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(run.metrics_json, metrics)
    meta.update(status="complete", finished=_now())
    write_json_atomic(run.run_json, meta)
    return run


def make_scorer(config: RunConfig, backend: Backend):
    """The model-based scorer a run needs (the generative verifier on the policy backend), or None."""
    if config.verifier == "genrm" or config.strategy == "particle-filter":
        from tteval.verifiers.genrm import GenRMScorer

        return GenRMScorer(backend, config.verifications, config.verifier_max_tokens, seed=config.seed)
    return None


def _local_results(config: RunConfig, task: Task, chunks: list[list[Problem]], meta: dict):
    """Load the backend now (so a bad model fails before any progress bar), then process chunks lazily."""
    backend = make_backend(config)
    meta["backend"] = {"name": backend.name, "model": backend.model}
    grader = Grader(task, workers=config.workers)
    scorer = make_scorer(config, backend)

    def results():
        try:
            for batch in chunks:
                timings = {"generation_s": 0.0, "grading_s": 0.0}
                u = backend.usage
                before = (u.prompt_tokens, u.completion_tokens, u.calls)
                records = _chunk_records(config, task, batch, backend, grader, scorer, timings)
                delta = {"prompt_tokens": u.prompt_tokens - before[0], "completion_tokens": u.completion_tokens - before[1],
                         "calls": u.calls - before[2]}  # fmt: skip
                yield records, timings, delta
        finally:
            grader.close()
            backend.close()

    return results()


def _ray_results(config: RunConfig, chunks: list[list[Problem]], meta: dict):
    from tteval.distributed import RayWorkers

    address = None if config.ray in ("", "local", "auto-local") else config.ray
    workers = RayWorkers(asdict(config), config.ray_actors, address, gpus_per_actor=config.tensor_parallel if config.backend == "vllm" else 0)
    meta["backend"] = {"name": config.backend, "model": config.model, "ray_actors": config.ray_actors}
    try:
        yield from workers.map(chunks)
    finally:
        workers.close()


def _generate(
    config: RunConfig, task: Task, problems: list[Problem], complete: set[str], run: RunDir, meta: dict, console: Console
) -> None:
    chunk = default_batch_problems(config)
    # chunks are fixed slices of the whole problem list, so a resumed run batches exactly as the first did
    chunks = [[p for p in problems[i : i + chunk] if p.task_id not in complete] for i in range(0, len(problems), chunk)]
    chunks = [c for c in chunks if c]
    timings, usage = meta["timings"], meta["usage"]
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tps]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    results = _ray_results(config, chunks, meta) if config.ray is not None else _local_results(config, task, chunks, meta)
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task(f"{task.name} x{config.n}", total=len(problems), completed=len(complete), tps="")
            for records, chunk_timings, delta in results:
                run.append_samples(records)
                for key, value in chunk_timings.items():
                    timings[key] = round(timings.get(key, 0.0) + value, 3)
                for key, value in delta.items():
                    usage[key] = usage.get(key, 0) + value
                write_json_atomic(run.run_json, meta)
                tps = usage["completion_tokens"] / max(timings["generation_s"], 1e-9)
                progress.update(bar, advance=len({r["task_id"] for r in records}), tps=f"{tps:,.0f} tok/s")
    except (KeyboardInterrupt, TtevalError) as exc:
        # a Ctrl-C or a backend failing mid-run: what was generated is on disk; say so and how to continue
        failed = isinstance(exc, TtevalError)
        meta["status"] = "failed" if failed else "interrupted"
        if failed:
            meta["error"] = str(exc)
        write_json_atomic(run.run_json, meta)
        n_saved = len(run.recover_samples())
        word = "[red]stopped by an error[/]" if failed else "[yellow]interrupted[/]"
        console.print(f"\n{word}: {n_saved} samples saved in {run.samples_path}", highlight=False)
        console.print(f"resume with: [bold]{resume_command(run)}[/]", highlight=False)
        raise
    finally:
        results.close()


def _chunk_records(config: RunConfig, task: Task, batch: list[Problem], backend, grader, scorer, timings) -> list[dict]:
    """Generate (pool sampling or particle filtering), grade and score one chunk of problems into records."""
    t0 = time.perf_counter()
    questions = [task.messages(p)[-1][1] for p in batch]
    extra: list[list[dict[str, Any]]] = [[{} for _ in range(config.n)] for _ in batch]
    if config.strategy == "particle-filter":
        from tteval.backends.base import Completion
        from tteval.strategies.particle_filter import particle_filter

        prompts = [backend.apply_chat_template(task.messages(p)) for p in batch]
        results = particle_filter(
            backend, scorer, questions, prompts, config.n, temperature=config.temperature,
            step_tokens=config.pf_step_tokens, max_steps=config.pf_max_steps, softmax_temp=config.pf_softmax_temp,
            seed=config.seed,
        )  # fmt: skip
        outputs = [[Completion(p.text, p.policy_tokens, "stop") for p in r.particles] for r in results]
        for ex, r in zip(extra, results):
            for j, p in enumerate(r.particles):
                ex[j] = {"scores": {"prm": p.reward}, "selected": j == r.selected, "steps": r.steps,
                         "problem_policy_tokens": r.policy_tokens, "problem_verifier_tokens": r.verifier_tokens}  # fmt: skip
    else:
        outputs = backend.generate(
            [
                Request(messages=task.messages(p), n=config.n, temperature=config.temperature, top_p=config.top_p,
                        max_tokens=config.max_tokens, seed=problem_seed(config.seed, p.task_id))  # fmt: skip
                for p in batch
            ]
        )
    timings["generation_s"] = round(timings["generation_s"] + time.perf_counter() - t0, 3)
    t1 = time.perf_counter()
    verdicts = grader.grade(batch, [[c.text for c in out] for out in outputs])
    timings["grading_s"] = round(timings["grading_s"] + time.perf_counter() - t1, 3)
    if config.verifier == "genrm" and config.strategy == "sample":
        t2 = time.perf_counter()
        scored = scorer.score([(q, c.text) for q, out in zip(questions, outputs) for c in out])
        it = iter(scored)
        for ex in extra:
            for j in range(len(ex)):
                s = next(it)
                ex[j] = {"scores": {"genrm": s.score}, "verifier_chain_scores": s.chain_scores, "verifier_tokens": s.tokens}
        timings["verification_s"] = round(timings.get("verification_s", 0.0) + time.perf_counter() - t2, 3)
    records = []
    for p, out, v, ex in zip(batch, outputs, verdicts, extra):
        for r, e in zip(sample_records(p, out, v), ex):
            r.update(e)
            records.append(r)
    return records
