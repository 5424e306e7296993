"""`tteval run`: sample a pool of candidates per problem, grade them, and file them in a resumable run folder."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tteval.backends.registry import backend_spec, default_batch_problems
from tteval.config import RunConfig
from tteval.engine_host import Chunk, LocalEngine
from tteval.errors import TtevalError
from tteval.records import SampleRules, read_run_meta
from tteval.results import RunDir, json_bytes, write_atomic, write_json_atomic
from tteval.provenance import run_provenance
from tteval.strategies.registry import strategy_for
from tteval.tasks import Problem, Task, load_problems, load_task, local_data_path, with_fewshot

__all__ = ["RunConfig", "execute", "resume_config"]


def resume_config(folder: Path, cache: bool = True) -> RunConfig:
    """The config a run folder was started with (`--resume`), refused if run.json's config was edited since."""
    path = folder / "run.json"
    meta = read_run_meta(path, resumable=True).to_dict()
    config = RunConfig.from_dict(meta["config"], f"{path}: config")
    config.execution.out, config.execution.cache = str(folder.parent), cache
    recorded = meta["config"]["identity"]
    if not config.matches(recorded):
        changed = config.changed_fields(recorded)
        raise TtevalError(f"{path}: its config was edited since the run started (changed: {', '.join(changed)});"
                          " resuming it would make a different run: restore the config, or start a new run without"
                          " --resume")  # fmt: skip
    return config


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("tteval", "numpy", "datasets", "math-verify", "llama_cpp_python", "vllm", "httpx", "typer", "rich"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class TokenBudget:
    """The most tokens a run can generate: the policy's candidates and the generative verifier's chains."""

    problems: int
    candidates: int  # per problem (particle Gibbs: N x T)
    per_candidate: int  # tokens one candidate (a particle slot: all its steps) may generate
    verifier: int  # verification tokens over the whole run
    steps: int = 1  # a searcher's steps per particle slot (per_candidate = steps x tokens per step)

    @property
    def policy(self) -> int:
        return self.problems * self.candidates * self.per_candidate

    def line(self) -> str:
        what = f"{self.problems:,} problems x {self.candidates:,} candidates x {self.per_candidate:,} tokens"
        if self.steps > 1:
            what = (f"{self.problems:,} problems x {self.candidates:,} particles x {self.steps:,} steps"
                    f" x {self.per_candidate // self.steps:,} tokens")  # fmt: skip
        verifier = f" + {self.verifier:,} verifier tokens" if self.verifier else ""
        return f"worst case: {self.policy:,} generated tokens ({what}){verifier}"


def worst_case_tokens(config: RunConfig, problems: int) -> TokenBudget:
    """The token budget of `problems` problems at most: every candidate runs to its cap (a particle slot through
    --pf-max-steps full steps), and a GenRM verifier writes V full chains per candidate, for particle filtering at
    every step. A PRM (vLLM pooling) generates nothing."""
    candidates, per, steps = strategy_for(config).worst_case(config)
    verifier = 0
    if config.genrm_mode():
        v = config.verifier
        verifier = problems * candidates * steps * v.verifications * (v.verifier_max_tokens + 1)
    return TokenBudget(problems, candidates, per, verifier, steps)


def open_run(config: RunConfig, run: RunDir, task: Task, model_file: str | None = None) -> dict[str, Any]:
    """Start the run's record in its (locked) folder, or reopen it to resume when its recorded config matches.
    `model_file`: the local model file the backend loads (its hash goes into the provenance), if any."""
    if run.run_json.exists():
        meta = read_run_meta(run.run_json, resumable=True).to_dict()
        RunConfig.from_dict(meta["config"], f"{run.run_json}: config")  # well typed, as --resume would read it
        if not config.matches(meta["config"]["identity"]):
            raise TtevalError(f"{run.path} holds a run with a different configuration; use another --out")
        return meta
    meta = {
        "run_id": config.run_id(),
        "config": {**config.to_flat(), "max_tokens": config.token_cap(), "identity": config.identity()},
        "created": _now(),
        "status": "running",
        "versions": package_versions(),
        "provenance": run_provenance(model_file, local_data_path(task)),
        "timings": {"generation_s": 0.0, "grading_s": 0.0},
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0},
    }
    write_json_atomic(run.run_json, meta)
    return meta


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resume_command(run: RunDir) -> str:
    return f"tteval run --resume {run.path}"


def execute(config: RunConfig, console: Console | None = None, engines: Any = None, run_path: Path | None = None) -> RunDir:
    """Run (or resume) a run and write run.json, samples.jsonl and metrics.json.

    `engines` (LocalEngine or RayEngines with this run's engine) lets a sweep reuse loaded engines across runs;
    without it the run loads its own and closes it at the end. `run_path` (`--resume DIR`) names the folder;
    by default it is `<out>/<run id>`. The folder is locked for the whole run: a second process fails at once."""
    console = console or Console(stderr=True)
    config.validate()
    tasks_dir = config.execution.tasks_dir
    task = with_fewshot(load_task(config.task, Path(tasks_dir) if tasks_dir else None), config.num_fewshot,
                        config.data_source, Path(tasks_dir) if tasks_dir else None)
    problems = load_problems(task, config.limit, config.data_source)
    model_file = backend_spec(config.backend.name).model_file(config)  # a missing model fails before a run folder
    out = config.execution.out
    if run_path is None and Path(out).exists() and not Path(out).is_dir():
        raise TtevalError(f"--out {out} is a file; give a folder to hold the run folders")
    run = RunDir(Path(run_path) if run_path is not None else run_folder(config))
    with run.locked():
        _execute_locked(config, task, problems, run, console, engines, model_file)
    return run


def run_folder(config: RunConfig) -> Path:
    """`<out>/<run id>`, or the folder an older tteval named by the config's identity-1 id when that holds the run
    (so re-running the same command resumes a run started before config sections)."""
    out = Path(config.execution.out)
    path, legacy = out / config.run_id(), out / config.legacy_run_id()
    if not path.exists() and (legacy / "run.json").is_file():
        try:
            recorded = read_run_meta(legacy / "run.json", resumable=True).config["identity"]
        except TtevalError:
            return path
        if config.matches(recorded):
            return legacy
    return path


def _execute_locked(config: RunConfig, task: Task, problems: list[Problem], run: RunDir, console: Console,
                    engines: Any, model_file: str | None) -> None:  # fmt: skip
    """The body of `execute`, with the folder locked: resume, generate what is missing, then metrics and status."""
    from tteval.metrics import compute_metrics

    strategy = strategy_for(config)
    rules = SampleRules(frozenset(p.task_id for p in problems), config.sampling.n)

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    fresh = not run.run_json.exists()
    try:
        meta = open_run(config, run, task, model_file)
        kept = run.trim(lambda records: strategy.kept_on_resume(config, records), rules, warn)
        done = [p for p in problems if strategy.finished(config, kept.get(p.task_id, []))]
        own = engines is None and len(done) < len(problems)
        if own:
            engines = start_engines(config)  # a backend that cannot start leaves the folder as it was
    except BaseException:
        if fresh:  # nothing generated: leave no run folder behind
            run.remove_if_unused()
        raise
    if kept:
        console.print(f"[cyan]resuming[/] {escape(str(run.path))}: {len(done)}/{len(problems)} problems already done")
    meta["status"] = "running"
    meta.pop("error", None)
    if len(done) < len(problems):
        console.print(escape(worst_case_tokens(config, len(problems) - len(done)).line()), highlight=False, soft_wrap=True)
        meta["backend"] = engines.describe()
        try:
            write_json_atomic(run.run_json, meta)  # "running" before the samples change, and metrics.json goes
            run.forget_metrics()
            _generate(config, task, problems, kept, run, meta, console, engines)
        finally:
            if own:
                log_lines(engines.close(), console)
    try:
        samples = run.read_samples(rules)
        t0 = time.perf_counter()
        metrics = compute_metrics(samples, task=task.name, n=config.sampling.n, seed=config.sampling.seed, config=config)
        meta["timings"]["metrics_s"] = round(time.perf_counter() - t0, 3)
        _warn_failures(metrics, len(samples), warn)
        meta.update(status="complete", finished=_now())
        write_atomic({run.metrics_json: json_bytes(metrics), run.run_json: json_bytes(meta)})  # both, or neither
    except TtevalError as exc:
        meta.pop("finished", None)
        _mark_failed(run, meta, exc)
        raise


def log_lines(lines: Any, console: Console) -> None:
    """Print the log lines a closed engine returns (a GPU engine: whether its memory came back)."""
    for line in lines or []:
        warning = line.startswith("warning: ")
        text = escape(line.removeprefix("warning: "))
        console.print(f"[yellow]warning:[/] {text}" if warning else f"[dim]{text}[/]", highlight=False, soft_wrap=True)


def _warn_failures(metrics: dict[str, Any], num_samples: int, warn: Any) -> None:
    """Say how many candidates failed (a prompt the engine refused, an aborted or errored request) and how many
    could not be scored: they count as incorrect / as reward 0, and metrics.json's "failed" has the reasons."""
    failed = metrics.get("failed") or {}
    for key, what, effect in (("samples", "candidates failed", "they count as incorrect"),
                              ("scores", "verifier scores failed", "those candidates got reward 0")):  # fmt: skip
        if failed.get(key):
            reasons = ", ".join(f"{r}: {c}" for r, c in failed[f"{key}_by_reason"].items())
            warn(f"{failed[key]} of {num_samples} {what} ({reasons}); {effect}")


def _mark_failed(run: RunDir, meta: dict[str, Any], exc: BaseException | None) -> None:
    """Record in run.json that the run stopped (failed with `exc`, or interrupted), if the disk still allows it."""
    meta["status"] = "failed" if exc is not None else "interrupted"
    if exc is not None:
        meta["error"] = str(exc)
    try:
        write_json_atomic(run.run_json, meta)
    except TtevalError:
        pass  # a full disk or a read-only folder: run.json keeps "running", which is not "complete" either


def start_engines(config: RunConfig):
    """Load the run's engine: one backend here, or one per Ray actor with --ray (a bad model fails here, early)."""
    ex = config.execution
    if ex.ray is None:
        return LocalEngine(config)
    from tteval.distributed import RayEngines

    address = None if ex.ray in ("", "local", "auto-local") else ex.ray
    gpus = backend_spec(config.backend.name).gpus_per_engine(config)
    return RayEngines(config, ex.ray_actors, address, gpus_per_actor=gpus)


def _generate(config: RunConfig, task: Task, problems: list[Problem], kept: dict[str, list[dict]], run: RunDir,
              meta: dict, console: Console, engines: Any) -> None:  # fmt: skip
    """Generate until every problem is finished, a chunk at a time, filing each chunk's samples as it arrives.

    Problems advance in lockstep (PassUntil rounds: the ones with the fewest samples first), and chunks are fixed
    slices of the whole problem list, so a resumed run batches exactly as an uninterrupted one."""
    size = default_batch_problems(config)
    have = {p.task_id: list(kept.get(p.task_id, [])) for p in problems}
    timings, usage = meta["timings"], meta["usage"]
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tps]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    strategy = strategy_for(config)
    finished = {t for t, rs in have.items() if strategy.finished(config, rs)}
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task(f"{task.name} x{config.sampling.n}", total=len(problems), completed=len(finished), tps="")
            while len(finished) < len(problems):
                level = min(len(have[p.task_id]) for p in problems if p.task_id not in finished)
                chunks = []
                for i in range(0, len(problems), size):
                    todo = [p for p in problems[i : i + size] if p.task_id not in finished and len(have[p.task_id]) == level]
                    if todo:
                        chunks.append(Chunk(tuple(todo), tuple(level for _ in todo)))
                for records, chunk_timings, delta in engines.map(config, chunks):
                    run.append_samples(records)
                    for key, value in chunk_timings.items():
                        timings[key] = round(timings.get(key, 0.0) + value, 3)
                    for key, value in delta.items():
                        usage[key] = usage.get(key, 0) + value
                    write_json_atomic(run.run_json, meta)
                    before = len(finished)
                    for r in records:
                        have[r["task_id"]].append(r)
                    finished |= {t for t in {r["task_id"] for r in records} if strategy.finished(config, have[t])}
                    tps = usage["completion_tokens"] / max(timings["generation_s"], 1e-9)
                    progress.update(bar, advance=len(finished) - before, tps=f"{tps:,.0f} tok/s")
    except (KeyboardInterrupt, TtevalError) as exc:
        # a Ctrl-C, a backend failing mid-run or a full disk: what was generated is on disk; say so and how to continue
        failed = isinstance(exc, TtevalError)
        _mark_failed(run, meta, exc if failed else None)
        n_saved = len(run.read_samples())
        word = "[red]stopped by an error[/]" if failed else "[yellow]interrupted[/]"
        console.print(f"\n{word}: {n_saved} samples saved in {escape(str(run.samples_path))}", highlight=False)
        console.print(f"resume with: [bold]{escape(resume_command(run))}[/]", highlight=False)
        raise
