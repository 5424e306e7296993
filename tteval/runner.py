"""`tteval run`: sample a pool of candidates per problem, grade them, and file them in a resumable run folder."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import time
import types
import typing
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tteval.backends.base import Backend
from tteval.backends.plugin import check_plugin_options, is_plugin, load_factory, make_plugin_backend
from tteval.bounds import RUN_BOUNDS, check_fields
from tteval.errors import TtevalError
from tteval.results import RunDir, SampleRules, json_bytes, read_json, write_atomic, write_json_atomic
from tteval.provenance import run_provenance
from tteval.tasks import PROMPT_FORMATS, Problem, Task, check_limit, load_problems, load_task, local_data_path
from tteval.workers import Chunk, LocalWorkers, problem_seed

__all__ = ["RunConfig", "execute", "make_backend", "make_scorer", "problem_seed", "resume_config"]

BACKENDS = ("llamacpp", "vllm", "openai")
STRATEGIES = ("sample", "particle-filter", "pass-until")
VERIFIERS = ("none", "genrm", "prm")


@dataclass
class RunConfig:
    """Everything that determines a run's samples; its hash names the run folder, so re-running resumes."""

    task: str = "gsm8k"
    model: str = "smollm2"
    backend: str = "llamacpp"
    strategy: str = "sample"
    n: int = 4
    limit: int | float | None = None  # None: the whole task; a float in (0, 1): that share of it (lm-eval)
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
    genrm_score: str | None = None  # GenRM's chain score (verifiers/genrm.py MODES); None: see genrm_mode()
    prm_model: str | None = None  # --verifier prm: the process reward model (vLLM pooling, GPU)
    prm_aggregation: str | None = None  # last | min | prod | mean | model; None: model for particle filtering, else last
    pf_step_tokens: int = 128
    pf_max_steps: int = 40
    pf_softmax_temp: float = 1.0
    pf_iterations: int = 1
    until_successes: int = 2
    round_size: int | None = None
    workers: int = 2
    cache: bool = True
    ray: str | None = None  # None: local; "local": a Ray instance on this machine; else a cluster address
    ray_actors: int = 2
    tensor_parallel: int = 1
    chat_template: str | None = None  # openai backend: render chats client-side with this Jinja template (file)
    max_concurrency: int = 16  # openai backend: requests in flight
    request_timeout: float = 600.0  # openai backend: seconds per HTTP request
    prompt_format: str = "chat"  # chat: the model's chat template; raw: plain text for base models
    model_args: dict[str, Any] | None = None  # --model-args: the engine constructor's extra arguments
    gen_kwargs: dict[str, Any] | None = None  # --gen-kwargs: extra sampling parameters of the policy's requests
    # fields below do not change the samples, so they are left out of the run id hash
    out: str = "results"
    _NON_IDENTITY: ClassVar[tuple[str, ...]] = (
        "out", "batch_problems", "workers", "tasks_dir", "cache", "ray", "ray_actors", "max_concurrency", "request_timeout",
    )  # fmt: skip
    # options added after the first release: left out of the run id at their default, so older runs still resume
    _LATER: ClassVar[dict[str, Any]] = {"pf_iterations": 1, "until_successes": 2, "round_size": None, "chat_template": None,
                                      "prm_model": None, "prm_aggregation": None, "genrm_score": None,
                                      "model_args": None, "gen_kwargs": None, "prompt_format": "chat"}

    def genrm_mode(self) -> str | None:
        """GenRM's chain score mode when GenRM scores anything, else None: --genrm-score, by default the authors'
        "hybrid" for --verifier genrm and tteval's forced "normalized" verdict for particle filtering's reward."""
        if self.verifier == "prm" or (self.verifier != "genrm" and self.strategy != "particle-filter"):
            return None
        return self.genrm_score or ("normalized" if self.strategy == "particle-filter" else "hybrid")

    def validate(self) -> None:
        if is_plugin(self.backend):
            load_factory(self.backend)  # a plug-in that cannot be imported fails before a run folder is made
        elif self.backend not in BACKENDS:
            raise TtevalError(f"unknown backend '{self.backend}'; choose one of: {', '.join(BACKENDS)}")
        if self.strategy not in STRATEGIES:
            raise TtevalError(f"unknown strategy '{self.strategy}'; choose one of: {', '.join(STRATEGIES)}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise TtevalError(f"unknown --prompt-format '{self.prompt_format}'; choose one of: {', '.join(PROMPT_FORMATS)}")
        if self.verifier not in VERIFIERS:
            raise TtevalError(f"unknown verifier '{self.verifier}'; choose one of: {', '.join(VERIFIERS)}")
        check_limit(self.limit)
        check_fields(self, RUN_BOUNDS if not isinstance(self.limit, float) else
                     {k: b for k, b in RUN_BOUNDS.items() if k != "limit"})  # fmt: skip
        if self.prm_aggregation is not None:
            from tteval.verifiers.prm import PRM_AGGREGATIONS

            if self.prm_aggregation not in PRM_AGGREGATIONS:
                raise TtevalError(f"unknown --prm-aggregation '{self.prm_aggregation}'; choose one of: {', '.join(PRM_AGGREGATIONS)}")
        if self.verifier == "prm":
            if not self.prm_model:
                raise TtevalError("--verifier prm needs --prm-model (e.g. Qwen/Qwen2.5-Math-PRM-7B)")
            if self.backend != "vllm":
                raise TtevalError("--verifier prm runs the PRM on vLLM's pooling API: use --backend vllm (GPU)")
        if self.genrm_score is not None:
            from tteval.verifiers.genrm import MODES

            if self.genrm_score not in MODES:
                raise TtevalError(f"unknown --genrm-score '{self.genrm_score}'; choose one of: {', '.join(MODES)}")
        if self.pf_iterations > 1 and self.n < 2:
            raise TtevalError("particle Gibbs (--pf-iterations > 1) needs -n of at least 2 (a reference plus a free particle)")
        from tteval.passthrough import check_gen_kwargs, check_model_args

        if is_plugin(self.backend):
            check_plugin_options(self.backend, self.model_args, self.gen_kwargs)
        else:
            check_model_args(self.backend, self.model_args)
            check_gen_kwargs(self.backend, self.gen_kwargs)
        if self.backend == "openai" and not self.base_url:
            raise TtevalError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")

    def identity(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in self._NON_IDENTITY and not (f.name in self._LATER and getattr(self, f.name) == self._LATER[f.name])
        }
        if self.genrm_mode():  # GenRM's scoring changed after 0.1: such runs get new ids, not a mixed resume
            out["genrm_score"] = self.genrm_mode()
        if self.strategy == "particle-filter":  # --max-tokens caps a particle since 0.2: new ids, not a mixed resume
            out["pf_particle_max_tokens"] = self.max_tokens
        return out

    def finished(self, records: list[dict[str, Any]]) -> bool:
        """Whether a problem's samples on disk are all it needs: N of them, or PassUntil's r-th success."""
        if self.strategy == "pass-until" and sum(bool(r.get("correct")) for r in records) >= self.until_successes:
            return True
        return len(records) >= self.n

    def kept_on_resume(self, records: list[dict[str, Any]]) -> int:
        """How many of a problem's samples (in order) a resumed run keeps: whole PassUntil rounds, else all or none."""
        if self.strategy != "pass-until":
            return len(records) if len(records) >= self.n else 0
        if len(records) >= self.n:
            return self.n
        return len(records) // self.round_len * self.round_len

    @property
    def round_len(self) -> int:
        """PassUntil's samples per problem per round."""
        return self.round_size or min(self.n, 16)

    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        model = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.model).name or self.model).strip("-")[:40]
        return f"{self.task}_{model}_{self.strategy}_n{self.n}_{digest}"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> RunConfig:
        """A RunConfig from a dict (a run.json's config): unknown keys are ignored, known ones must be well typed."""
        if not isinstance(d, dict):
            raise TtevalError(f"{where} must be a JSON object, got {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            if f.name in d:
                values[f.name] = _typed(d[f.name], hints[f.name], f"{where}: field '{f.name}'")
        return cls(**values)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """`value` if it has the type `hint` (int, float, str, bool or Optional of one), else a one-line error."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for t in options:
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
        if typing.get_origin(t) is dict and isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
    names = " or ".join("null" if t is type(None) else "object" if typing.get_origin(t) is dict else t.__name__
                        for t in options)  # fmt: skip
    raise TtevalError(f"{where} must be {names}, got {json.dumps(value)[:60]}")


def read_run_meta(path: Path) -> dict[str, Any]:
    """A run.json read back: an object whose config, identity, timings and usage have the shapes tteval wrote."""
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise TtevalError(f"{path}: not a tteval run record (a JSON {type(meta).__name__}, not an object)")
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("identity"), dict):
        raise TtevalError(f"{path}: not a tteval run record ('config' must be an object with an 'identity' object)")
    for key in ("timings", "usage"):
        value = meta.setdefault(key, {})
        if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
            raise TtevalError(f"{path}: '{key}' must be an object of numbers")
    for key, default in (("generation_s", 0.0), ("grading_s", 0.0)):
        meta["timings"].setdefault(key, default)
    for key in ("prompt_tokens", "completion_tokens", "calls"):
        meta["usage"].setdefault(key, 0)
    return meta


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def resume_config(folder: Path, cache: bool = True) -> RunConfig:
    """The config a run folder was started with (`--resume`), refused if run.json's config was edited since."""
    path = folder / "run.json"
    meta = read_run_meta(path)
    config = RunConfig.from_dict(meta["config"], f"{path}: config")
    config.out, config.cache = str(folder.parent), cache
    recorded = meta["config"]["identity"]
    now = config.identity()
    if now != recorded:
        changed = sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))
        raise TtevalError(f"{path}: its config was edited since the run started (changed: {', '.join(changed)});"
                          " resuming it would make a different run: restore the config, or start a new run without"
                          " --resume")  # fmt: skip
    return config


def make_backend(config: RunConfig) -> Backend:
    """The configured backend behind the generation cache (unless --no-cache)."""
    backend = _raw_backend(config)
    if not config.cache:
        return backend
    from tteval.cache import CachedBackend

    return CachedBackend(backend)


def _raw_backend(config: RunConfig) -> Backend:
    """Instantiate the configured backend (imports are lazy: vLLM is optional and heavy)."""
    if is_plugin(config.backend):
        return make_plugin_backend(config.backend, config)
    if config.backend == "llamacpp":
        from tteval.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model=config.model, **(config.model_args or {}))
    if config.backend == "vllm":
        from tteval.backends.vllm import VLLMBackend

        share = 0.5 if config.verifier == "prm" else 0.9  # the PRM's engine takes 0.4 of the same GPU
        engine_args = {"gpu_memory_utilization": share, **(config.model_args or {})}
        return VLLMBackend(model=config.model, seed=config.seed, tensor_parallel_size=config.tensor_parallel,
                           **engine_args)  # fmt: skip
    from tteval.backends.openai import OpenAIBackend

    return OpenAIBackend(base_url=config.base_url, model=config.model, max_concurrency=config.max_concurrency,
                         timeout_s=config.request_timeout, chat_template=config.chat_template)  # fmt: skip


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
    per_candidate: int  # tokens one candidate may generate
    verifier: int  # verification tokens over the whole run

    @property
    def policy(self) -> int:
        return self.problems * self.candidates * self.per_candidate

    def line(self) -> str:
        what = f"{self.problems:,} problems x {self.candidates:,} candidates x {self.per_candidate:,} tokens"
        verifier = f" + {self.verifier:,} verifier tokens" if self.verifier else ""
        return f"worst case: {self.policy:,} generated tokens ({what}){verifier}"


def worst_case_tokens(config: RunConfig, problems: int) -> TokenBudget:
    """The token budget of `problems` problems at most: every candidate runs to its cap (a particle to
    --max-tokens over at most --pf-max-steps steps), and a GenRM verifier writes V full chains per candidate, for
    particle filtering at every step. A PRM (vLLM pooling) generates nothing."""
    candidates, per = config.n, config.max_tokens
    steps = 1
    if config.strategy == "particle-filter":
        candidates *= config.pf_iterations
        per = min(config.max_tokens, config.pf_max_steps * config.pf_step_tokens)
        steps = min(config.pf_max_steps, per)  # a step that generates nothing ends the particle
    verifier = 0
    if config.genrm_mode():
        verifier = problems * candidates * steps * config.verifications * (config.verifier_max_tokens + 1)
    return TokenBudget(problems, candidates, per, verifier)


def default_batch_problems(config: RunConfig) -> int:
    if config.batch_problems:
        return config.batch_problems
    return {"openai": 32, "vllm": 256}.get(config.backend, max(1, 16 // config.n))  # llamacpp and plug-ins


def open_run(config: RunConfig, run: RunDir, task: Task, model_file: str | None = None) -> dict[str, Any]:
    """Start the run's record in its (locked) folder, or reopen it to resume when its recorded config matches.
    `model_file`: the local model file the backend loads (its hash goes into the provenance), if any."""
    if run.run_json.exists():
        meta = read_run_meta(run.run_json)
        RunConfig.from_dict(meta["config"], f"{run.run_json}: config")  # well typed, as --resume would read it
        if meta["config"]["identity"] != config.identity():
            raise TtevalError(f"{run.path} holds a run with a different configuration; use another --out")
        return meta
    meta = {
        "run_id": config.run_id(),
        "config": {**asdict(config), "identity": config.identity()},
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


def execute(config: RunConfig, console: Console | None = None, workers: Any = None, run_path: Path | None = None) -> RunDir:
    """Run (or resume) a run and write run.json, samples.jsonl and metrics.json.

    `workers` (LocalWorkers or RayWorkers with this run's engine) lets a sweep reuse loaded engines across runs;
    without it the run loads its own and closes it at the end. `run_path` (`--resume DIR`) names the folder;
    by default it is `<out>/<run id>`. The folder is locked for the whole run: a second process fails at once."""
    console = console or Console(stderr=True)
    config.validate()
    task = load_task(config.task, Path(config.tasks_dir) if config.tasks_dir else None)
    problems = load_problems(task, config.limit, config.data_source)
    model_file = None
    if config.backend == "llamacpp":
        from tteval.backends.llamacpp import resolve_model_path

        model_file = resolve_model_path(config.model)  # fail on a missing model before a run folder is made
    if run_path is None and Path(config.out).exists() and not Path(config.out).is_dir():
        raise TtevalError(f"--out {config.out} is a file; give a folder to hold the run folders")
    run = RunDir(Path(run_path) if run_path is not None else Path(config.out) / config.run_id())
    with run.locked():
        _execute_locked(config, task, problems, run, console, workers, model_file)
    return run


def _execute_locked(config: RunConfig, task: Task, problems: list[Problem], run: RunDir, console: Console,
                    workers: Any, model_file: str | None) -> None:  # fmt: skip
    """The body of `execute`, with the folder locked: resume, generate what is missing, then metrics and status."""
    from tteval.metrics import compute_metrics

    rules = SampleRules(frozenset(p.task_id for p in problems), config.n)

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    fresh = not run.run_json.exists()
    try:
        meta = open_run(config, run, task, model_file)
        kept = run.trim(config.kept_on_resume, rules, warn)
        done = [p for p in problems if config.finished(kept.get(p.task_id, []))]
        own = workers is None and len(done) < len(problems)
        if own:
            workers = start_workers(config)  # a backend that cannot start leaves the folder as it was
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
        meta["backend"] = workers.describe()
        try:
            write_json_atomic(run.run_json, meta)  # "running" before the samples change, and metrics.json goes
            run.forget_metrics()
            _generate(config, task, problems, kept, run, meta, console, workers)
        finally:
            if own:
                log_lines(workers.close(), console)
    try:
        samples = run.recover_samples(rules)
        t0 = time.perf_counter()
        metrics = compute_metrics(samples, task=task.name, n=config.n, seed=config.seed, config=config)
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


def make_scorer(config: RunConfig, backend: Backend):
    """The model-based scorer a run needs, or None: a PRM on its own vLLM engine (--verifier prm), else the
    generative verifier on the policy backend (GenRM, and the process reward of particle filtering on CPU)."""
    if config.verifier == "prm":
        from tteval.verifiers.prm import make_prm_scorer

        default = "model" if config.strategy == "particle-filter" else "last"
        return make_prm_scorer(str(config.prm_model), config.prm_aggregation or default)
    if config.verifier == "genrm" or config.strategy == "particle-filter":
        from tteval.verifiers.genrm import GenRMScorer

        return GenRMScorer(backend, config.verifications, config.verifier_max_tokens, seed=config.seed,
                           mode=config.genrm_mode() or "hybrid")  # fmt: skip
    return None


def start_workers(config: RunConfig):
    """Load the run's engine: one backend here, or one per Ray actor with --ray (a bad model fails here, early)."""
    if config.ray is None:
        return LocalWorkers(asdict(config))
    from tteval.distributed import RayWorkers

    address = None if config.ray in ("", "local", "auto-local") else config.ray
    gpus = config.tensor_parallel if config.backend == "vllm" else 0
    return RayWorkers(asdict(config), config.ray_actors, address, gpus_per_actor=gpus)


def _generate(config: RunConfig, task: Task, problems: list[Problem], kept: dict[str, list[dict]], run: RunDir,
              meta: dict, console: Console, workers: Any) -> None:  # fmt: skip
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
    finished = {t for t, rs in have.items() if config.finished(rs)}
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task(f"{task.name} x{config.n}", total=len(problems), completed=len(finished), tps="")
            while len(finished) < len(problems):
                level = min(len(have[p.task_id]) for p in problems if p.task_id not in finished)
                chunks = []
                for i in range(0, len(problems), size):
                    todo = [p for p in problems[i : i + size] if p.task_id not in finished and len(have[p.task_id]) == level]
                    if todo:
                        chunks.append(Chunk(tuple(todo), tuple(level for _ in todo)))
                for records, chunk_timings, delta in workers.map(asdict(config), chunks):
                    run.append_samples(records)
                    for key, value in chunk_timings.items():
                        timings[key] = round(timings.get(key, 0.0) + value, 3)
                    for key, value in delta.items():
                        usage[key] = usage.get(key, 0) + value
                    write_json_atomic(run.run_json, meta)
                    before = len(finished)
                    for r in records:
                        have[r["task_id"]].append(r)
                    finished |= {t for t in {r["task_id"] for r in records} if config.finished(have[t])}
                    tps = usage["completion_tokens"] / max(timings["generation_s"], 1e-9)
                    progress.update(bar, advance=len(finished) - before, tps=f"{tps:,.0f} tok/s")
    except (KeyboardInterrupt, TtevalError) as exc:
        # a Ctrl-C, a backend failing mid-run or a full disk: what was generated is on disk; say so and how to continue
        failed = isinstance(exc, TtevalError)
        _mark_failed(run, meta, exc if failed else None)
        n_saved = len(run.recover_samples())
        word = "[red]stopped by an error[/]" if failed else "[yellow]interrupted[/]"
        console.print(f"\n{word}: {n_saved} samples saved in {escape(str(run.samples_path))}", highlight=False)
        console.print(f"resume with: [bold]{escape(resume_command(run))}[/]", highlight=False)
        raise
