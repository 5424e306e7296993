"""The `tteval` command line: run, score, tasks (and later sweep, leaderboard, report)."""

from __future__ import annotations

import os
import signal
import sys

# scipy's L-BFGS-B (RPC's Weibull fit) runs tiny problems; multi-threaded BLAS only adds overhead there.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from tteval.errors import TtevalError
from tteval.runner import BACKENDS, STRATEGIES, VERIFIERS
from tteval.tasks import DATA_SOURCES, PROMPT_FORMATS
from tteval.verifiers.genrm import MODES as GENRM_MODES
from tteval.verifiers.prm import PRM_AGGREGATIONS

app = typer.Typer(
    help="tteval: measure how much test-time compute buys. Sample candidate pools, verify them, and score "
    "strategies (best-of-N, self-consistency, RPC, GenRM, particle filtering) with unbiased estimators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped or redirected stdout (`tteval leaderboard > file`) gets whole lines: no wrapping at 80 columns, no colour.
out = Console() if sys.stdout.isatty() else Console(width=10_000, soft_wrap=True, no_color=True)
err = Console(stderr=True)


def _choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of an option's allowed values, so `--help` lists them and click refuses others in one line."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


def _backend_name(value: str) -> str:
    """--backend: a built-in backend's name or a `module:factory` plug-in."""
    if value in BACKENDS or ":" in value:
        return value
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(repr(b) for b in BACKENDS)} (or MODULE:FACTORY)")


StrategyChoice = _choice("StrategyChoice", STRATEGIES)
VerifierChoice = _choice("VerifierChoice", VERIFIERS)
DataSourceChoice = _choice("DataSourceChoice", DATA_SOURCES)
PromptFormatChoice = _choice("PromptFormatChoice", PROMPT_FORMATS)
GenRMScoreChoice = _choice("GenRMScoreChoice", GENRM_MODES)
PRMAggregationChoice = _choice("PRMAggregationChoice", PRM_AGGREGATIONS)

TASK, SAMPLING, BACKEND, STRATEGY, VERIFIER, PF, OUTPUT = (
    "Task", "Sampling", "Backend", "Strategy", "Verifier", "Particle filtering", "Output",
)  # fmt: skip


def _value(choice: Any) -> Any:
    return choice.value if isinstance(choice, Enum) else choice


def _version(show: bool) -> None:
    if show:
        from tteval import __version__

        out.print(f"tteval {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """tteval: measure how much test-time compute buys."""


@app.command()
def run(
    ctx: typer.Context,
    task: str = typer.Option(
        "gsm8k", "--task", "--tasks", "-t", rich_help_panel=TASK,
        help="Task name(s) (see `tteval tasks`) or path(s) to a task YAML; comma-separated for several tasks "
        "(one run folder per task, on one loaded model).",
    ),
    model: str = typer.Option(
        "smollm2", "--model", "-m", rich_help_panel=TASK,
        help="Model: 'smollm2' (the embedded CPU default GGUF), a local .gguf path, or a hub id / served model name.",
    ),
    limit: Optional[str] = typer.Option(
        None, "--limit", "-l", metavar="N|FRACTION", rich_help_panel=TASK,
        help="Only the first N problems, or a fraction in (0, 1) of the task (0.5 = the first half); default: all.",
    ),
    tasks_dir: Optional[Path] = typer.Option(None, "--tasks-dir", rich_help_panel=TASK, help="Extra folder of task YAML files."),
    data_source: DataSourceChoice = typer.Option(
        "auto", "--data-source", rich_help_panel=TASK, help="auto (vendored file, else hub), local, or hub."
    ),
    prompt_format: PromptFormatChoice = typer.Option(
        "chat", "--prompt-format", rich_help_panel=TASK,
        help="chat: the task's messages through the model's chat template; raw: their text as one plain prompt "
        "(base models), on every backend.",
    ),
    n: int = typer.Option(4, "-n", "--num-samples", rich_help_panel=SAMPLING, help="Candidates sampled per problem (the pool size N)."),
    max_tokens: int = typer.Option(
        256, "--max-tokens", rich_help_panel=SAMPLING,
        help="Maximum generated tokens per candidate.",
    ),
    temperature: float = typer.Option(0.7, "--temperature", rich_help_panel=SAMPLING, help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(1.0, "--top-p", rich_help_panel=SAMPLING, help="Nucleus sampling mass."),
    seed: int = typer.Option(
        0, "--seed", rich_help_panel=SAMPLING, help="Run seed; each problem's samples depend only on it and the problem id."
    ),
    gen_kwargs: Optional[str] = typer.Option(
        None, "--gen-kwargs", metavar="KEY=VALUE,...", rich_help_panel=SAMPLING,
        help="More sampling parameters of the candidates: vllm.SamplingParams fields (vllm), or the API's (openai: "
        "top_k, min_p, presence_penalty, ...), e.g. top_k=20,min_p=0.05.",
    ),
    backend: str = typer.Option(
        "llamacpp", "--backend", "-b", rich_help_panel=BACKEND, callback=_backend_name,
        metavar="<" + "|".join(BACKENDS) + "|MODULE:FACTORY>",
        help="Sampling backend: llamacpp (CPU), vllm (GPU), openai (HTTP), or a plug-in: a factory taking the run "
        "config and returning a Backend (tteval/backends/plugin.py).",
    ),
    model_args: Optional[str] = typer.Option(
        None, "--model-args", metavar="KEY=VALUE,...", rich_help_panel=BACKEND,
        help="Engine arguments: vllm.EngineArgs fields (vllm: dtype=bfloat16,max_model_len=4096,"
        "gpu_memory_utilization=0.8,revision=...,trust_remote_code=true), or n_ctx, n_threads, max_parallel (llamacpp).",
    ),
    base_url: Optional[str] = typer.Option(None, "--base-url", rich_help_panel=BACKEND, help="OpenAI-compatible server URL (openai backend)."),
    chat_template: Optional[str] = typer.Option(
        None, "--chat-template", rich_help_panel=BACKEND,
        help="openai backend: render chats here with this Jinja template file (for raw-prompt strategies).",
    ),
    max_concurrency: int = typer.Option(16, "--max-concurrency", rich_help_panel=BACKEND, help="openai backend: HTTP requests in flight."),
    request_timeout: float = typer.Option(600.0, "--timeout", rich_help_panel=BACKEND, help="openai backend: seconds allowed per HTTP request."),
    batch_problems: Optional[int] = typer.Option(
        None, "--batch-problems", rich_help_panel=BACKEND, help="Problems per backend call (checkpoint unit)."
    ),
    ray: Optional[str] = typer.Option(
        None, "--ray", rich_help_panel=BACKEND,
        help="Shard problems over Ray actors: 'local' starts Ray here; or a cluster address (ray://host:10001).",
    ),
    ray_actors: int = typer.Option(2, "--ray-actors", rich_help_panel=BACKEND, help="Ray actors, each holding one loaded backend (one per GPU)."),
    tensor_parallel: int = typer.Option(
        1, "--tensor-parallel", rich_help_panel=BACKEND, help="vLLM tensor-parallel GPUs per engine (and per Ray actor)."
    ),
    cache: bool = typer.Option(
        True, "--cache/--no-cache", rich_help_panel=BACKEND,
        help="Reuse identical seeded requests from the SQLite generation cache ($TTEVAL_CACHE_DIR).",
    ),
    strategy: StrategyChoice = typer.Option(
        "sample", "--strategy", "-s", rich_help_panel=STRATEGY,
        help="sample: an i.i.d. pool of N, scored by every selector at every k <= N; "
        "particle-filter: N particles steered step by step by a process reward (the generative verifier on CPU); "
        "pass-until: sample each problem in rounds until --until-successes correct answers or N samples, for "
        "unbiased estimates of tiny pass rates.",
    ),
    until_successes: int = typer.Option(
        2, "--until-successes", rich_help_panel=STRATEGY,
        help="PassUntil: stop a problem at this many correct samples (>= 2 for the unbiased (r-1)/(K-1)).",
    ),
    round_size: Optional[int] = typer.Option(
        None, "--round-size", rich_help_panel=STRATEGY, help="PassUntil: samples drawn per problem per round (default: min(N, 16))."
    ),
    verifier: VerifierChoice = typer.Option(
        "none", "--verifier", rich_help_panel=VERIFIER,
        help="Model-based verifier: none | genrm (a generative verifier on the policy model) | prm (a process reward "
        "model on vLLM's pooling API, GPU). Scores pool candidates (bon@k) and steers particle filtering.",
    ),
    prm_model: Optional[str] = typer.Option(
        None, "--prm-model", rich_help_panel=VERIFIER, help="--verifier prm: the PRM, e.g. Qwen/Qwen2.5-Math-PRM-7B."
    ),
    prm_aggregation: Optional[PRMAggregationChoice] = typer.Option(
        None, "--prm-aggregation", rich_help_panel=VERIFIER,
        help="--verifier prm: step aggregation (model: the whole answer as one step); default model for particle "
        "filtering, last otherwise.",
    ),
    verifications: int = typer.Option(
        1, "--verifications", "-V", rich_help_panel=VERIFIER, help="Verification chains per candidate (GenRM's V)."
    ),
    verifier_max_tokens: int = typer.Option(128, "--verifier-max-tokens", rich_help_panel=VERIFIER, help="Tokens per verification chain."),
    genrm_score: Optional[GenRMScoreChoice] = typer.Option(
        None, "--genrm-score", rich_help_panel=VERIFIER,
        help="GenRM chain score: hybrid (default with --verifier genrm: the authors' P(Yes) at the "
        "sampled verdict token, else the written verdict) | logprob | binary (the written Yes/No) | normalized (tteval "
        "0.1: a forced verdict, p(Yes)/(p(Yes)+p(No)); the default for particle filtering's process reward).",
    ),
    workers: int = typer.Option(2, "--workers", rich_help_panel=VERIFIER, help="Parallel grading processes (answers, unit tests)."),
    pf_step_tokens: int = typer.Option(128, "--pf-step-tokens", rich_help_panel=PF, help="Max tokens per step."),
    pf_max_steps: int = typer.Option(40, "--pf-max-steps", rich_help_panel=PF, help="Max steps per particle."),
    pf_softmax_temp: float = typer.Option(1.0, "--pf-softmax-temp", rich_help_panel=PF, help="Resampling temperature."),
    pf_iterations: int = typer.Option(
        1, "--pf-iterations", rich_help_panel=PF, help="Particle Gibbs iterations T (1 = plain particle filtering); budget N x T generations."
    ),
    out_dir: Path = typer.Option(Path("results"), "--out", "-o", rich_help_panel=OUTPUT, help="Folder that receives <run_id>/."),
    resume: Optional[Path] = typer.Option(
        None, "--resume", rich_help_panel=OUTPUT,
        help="Continue the run in this folder with its recorded config (other options but --no-cache are ignored).",
    ),
) -> None:
    """Sample N candidates per problem, verify them, and write run.json, samples.jsonl and metrics.json.

    Re-running the same command with the same --out resumes an interrupted run where it stopped.
    """
    from dataclasses import replace

    from tteval.passthrough import parse_kv
    from tteval.runner import RunConfig, execute, resume_config
    from tteval.tasks import parse_limit

    if resume is not None:
        config = resume_config(resume, cache)  # a folder that is not a run: one error line, no warning first
        ignored = _given_flags(ctx, exclude={"resume", "cache"})
        if ignored:
            _warn_line(f"--resume runs with the config recorded in {resume / 'run.json'}; ignored: {', '.join(ignored)}")
        _print_run(config, execute(config, console=err, run_path=resume).path)
        return
    base = RunConfig(
        task=task, model=model, backend=_value(backend), strategy=_value(strategy), n=n, limit=parse_limit(limit),
        max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, base_url=base_url,
        chat_template=chat_template, max_concurrency=max_concurrency, request_timeout=request_timeout,
        tasks_dir=str(tasks_dir) if tasks_dir else None, data_source=_value(data_source),
        batch_problems=batch_problems, workers=workers, out=str(out_dir), cache=cache, verifier=_value(verifier),
        verifications=verifications, verifier_max_tokens=verifier_max_tokens, genrm_score=_value(genrm_score),
        prm_model=prm_model, prm_aggregation=_value(prm_aggregation), pf_step_tokens=pf_step_tokens,
        pf_max_steps=pf_max_steps, pf_softmax_temp=pf_softmax_temp, pf_iterations=pf_iterations,
        until_successes=until_successes, round_size=round_size, ray=ray, ray_actors=ray_actors,
        tensor_parallel=tensor_parallel, model_args=parse_kv(model_args, "--model-args"),
        gen_kwargs=parse_kv(gen_kwargs, "--gen-kwargs"), prompt_format=_value(prompt_format),
    )  # fmt: skip
    configs = [replace(base, task=name) for name in _task_list(task)]
    if len(configs) == 1:
        folders = [execute(configs[0], console=err).path]
    else:
        from tteval.sweep import run_grid

        for c in configs:
            c.validate()
        folders = run_grid(configs, err)  # one loaded engine for every task; finished runs are skipped
    for config, folder in zip(configs, folders):
        _print_run(config, folder)


def _print_run(config: Any, folder: Path) -> None:
    """A finished run's metrics table and folder, on stdout."""
    from tteval.report import metrics_table
    from tteval.results import read_json

    out.print(metrics_table(read_json(folder / "metrics.json"), title=f"{config.task} · {config.model} · n={config.n}"))
    out.print(f"results: [bold]{escape(str(folder))}[/]")


def _task_list(text: str) -> list[str]:
    """`--tasks a,b` -> ["a", "b"] (as lm-eval's --tasks); duplicates and empty items are refused in one line."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise TtevalError(f"--task must be task names separated by commas, got '{text}'")
    dup = sorted({t for t in names if names.count(t) > 1})
    if dup:
        raise TtevalError(f"--task names {', '.join(dup)} more than once")
    return names


def _given_flags(ctx: Any, exclude: set[str]) -> list[str]:
    """The options the user gave on the command line (or by environment), by their first flag, in declared order."""
    given = []
    for param in ctx.command.params:
        if param.name in exclude or not getattr(param, "opts", None):
            continue
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            given.append(param.opts[0])
    return given


@app.command()
def score(
    samples: Path = typer.Argument(..., help="A samples JSONL: tteval's, human-eval/evalplus {task_id, completion|solution}, ENAMEL's JSON (one list of "
                                   "programs per HumanEval problem), "
                                   "or with --graded {task_id, answer, correct, ...}."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="The task the samples answer (with --graded: only a label)."),
    graded: bool = typer.Option(
        False, "--graded", help="The pool is graded already: trust each record's `correct`, group `answer` strings into "
        "classes; records {task_id, answer, correct, [sample_index], [logprob], [num_tokens], [scores], "
        "[verifier_chain_scores], [verifier_tokens], [completion]}.",
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write a run folder here (run.json, samples.jsonl, metrics.json)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model that wrote the samples (a label for run.json)."),
    classes: str = typer.Option("string", "--classes", help="--graded: answer classes by string (after strip) or math (math-verify)."),
    genrm_lambda: Optional[float] = typer.Option(
        None, "--lambda", help="GenRM's tokens per verification / tokens per solution for compute C = S(1 + lambda V); "
        "default: measured from verifier_tokens and num_tokens, else 1 (GenRM-Base, as the authors).",
    ),
    tasks_dir: Optional[Path] = typer.Option(None, "--tasks-dir", help="Extra folder of task YAML files."),
    workers: int = typer.Option(2, "--workers", help="Parallel verifier processes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap intervals and Monte-Carlo estimates."),
) -> None:
    """Grade an external sample file against a task (or take a graded pool as it is), print its metrics, and
    write a run folder that `leaderboard`, `sweep` and `report` read."""
    from tteval.report import metrics_table
    from tteval.results import RunDir
    from tteval.scoring import check_out_dir, score_file

    if out_dir is None:
        metrics = score_file(samples, task, tasks_dir=tasks_dir, workers=workers, seed=seed, graded=graded, model=model,
                             classing=classes, genrm_lambda=genrm_lambda)  # fmt: skip
    else:
        check_out_dir(out_dir)  # before the lock creates the folder: a symlink or a file is refused untouched
        existed = out_dir.exists()
        try:
            with RunDir(out_dir).locked():  # one writer per --out: a second `tteval score` fails at once
                metrics = score_file(samples, task, out_dir=out_dir, tasks_dir=tasks_dir, workers=workers, seed=seed,
                                     graded=graded, model=model, classing=classes, genrm_lambda=genrm_lambda)  # fmt: skip
        except BaseException:
            if not existed:
                RunDir(out_dir).remove_if_unused()  # bad input leaves no empty folder behind
            raise
    out.print(metrics_table(metrics, title=f"{samples.name} · {metrics['task']}"))
    if out_dir is not None:
        out.print(f"results: [bold]{escape(str(out_dir))}[/]")


@app.command()
def tasks(tasks_dir: Optional[Path] = typer.Option(None, "--tasks-dir", help="Extra folder of task YAML files.")) -> None:
    """List the available tasks with their kind, size and data source."""
    from rich.table import Table

    from tteval.tasks import load_task, local_data_path, task_names

    table = Table(title="tteval tasks")
    for col in ("task", "kind", "problems", "source (hub)", "vendored file", "license"):
        table.add_column(col)
    for name in task_names(tasks_dir):
        t = load_task(name, tasks_dir)
        path = local_data_path(t)
        size = sum(1 for _ in open(path, "rb")) if path and path.is_file() else "?"
        hub = t.source.get("hub") or {}
        hub_s = f"{hub.get('path', '')} [{hub.get('split', '')}]" if hub else "-"
        cells = (t.name, t.kind, str(size), hub_s, path.name if path else "-", str(t.source.get("license", "")))
        table.add_row(*(escape(c) for c in cells))  # "[test]" is data, not rich markup
    out.print(table)


@app.command()
def leaderboard(
    root: Path = typer.Argument(Path("results"), help="Folder searched (any depth) for run folders with run.json and metrics.json."),
    sort: Optional[str] = typer.Option(
        None, "--sort", help="Sort column (accuracy, tokens, flops, wall_s, budget, model, task, strategy, ...); "
        "prefix '-' for descending, '+' for ascending. Default: task, then accuracy (best first).",
    ),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only tasks matching this glob pattern."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only models matching this glob pattern."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="Only strategies (curve names) matching this glob, e.g. 'bon@k*'."),
    budget: str = typer.Option("max", "--budget", "-k", help="'max': each curve at its largest budget; 'all'; or a budget k."),
    fmt: str = typer.Option("rich", "--format", "-f", help="rich | markdown | csv | json | html."),
    params: Optional[list[str]] = typer.Option(
        None, "--params", help="Model parameter count for FLOPs when run.json lacks model_params: COUNT or MODEL=COUNT (repeatable; e.g. 1.5B)."
    ),
) -> None:
    """Rank every run below ROOT: accuracy with its 95% interval, tokens and FLOPs per problem, wall time."""
    from tteval.leaderboard import (
        FORMATS, collect_runs, leaderboard_frame, parse_params_option, render_leaderboard, require_rows,
    )  # fmt: skip

    if fmt not in FORMATS:
        raise TtevalError(f"unknown --format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    df = collect_runs(root, parse_params_option(params), on_warning=_warn_line)
    require_rows(df, str(root))
    board = leaderboard_frame(df, task=task, model=model, strategy=strategy, budget=budget, sort=sort)
    if board.empty:
        raise TtevalError("no leaderboard rows match the filters (check --task, --model, --strategy, --budget)")
    rendered = render_leaderboard(board, fmt)
    if isinstance(rendered, str):
        sys.stdout.write(rendered)
    else:
        out.print(rendered)


@app.command()
def sweep(
    run_dirs: Optional[list[Path]] = typer.Argument(
        None, help="Run folders, or folders holding run folders (any depth), to include. Optional with a grid (--task)."
    ),
    out_dir: Path = typer.Option(Path("sweep"), "--out", "-o", help="Folder for sweep.csv/.parquet, compute_optimal.csv and the plots."),
    task: Optional[list[str]] = typer.Option(None, "--task", "-t", help="Grid: run this task (repeatable). Without it, only RUN_DIRS are gathered."),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="Grid: model (repeatable; default smollm2)."),
    strategy: Optional[list[str]] = typer.Option(
        None, "--strategy", "-s", help="Grid: sample (one pool at the largest budget, every selector at every k) and/or "
        "particle-filter (one run per budget); repeatable; default sample.",
    ),
    budgets: str = typer.Option("1,2,4,8", "--budgets", "-k", help="Grid: budgets (samples or particles), comma-separated."),
    temperature: Optional[list[float]] = typer.Option(None, "--temperature", help="Grid: sampling temperature (repeatable; default 0.7)."),
    backend: str = typer.Option("llamacpp", "--backend", "-b", help="Grid: llamacpp | vllm | openai."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Grid: OpenAI-compatible server URL (openai backend)."),
    limit: Optional[str] = typer.Option(
        None, "--limit", "-l", metavar="N|FRACTION", help="Grid: the first N problems (or a fraction in (0, 1)) of each task; default: all."
    ),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Grid: maximum tokens per candidate."),
    seed: int = typer.Option(0, "--seed", help="Grid: run seed."),
    verifier: str = typer.Option("none", "--verifier", help="Grid: score pools with none | genrm."),
    verifications: int = typer.Option(1, "--verifications", "-V", help="Grid: GenRM verification chains per candidate."),
    pf_step_tokens: int = typer.Option(128, "--pf-step-tokens", help="Grid: particle filtering max tokens per step."),
    pf_max_steps: int = typer.Option(40, "--pf-max-steps", help="Grid: particle filtering max steps."),
    runs_dir: Path = typer.Option(Path("results"), "--runs-dir", help="Grid: folder that receives the runs (re-running resumes them)."),
    tasks_dir: Optional[Path] = typer.Option(None, "--tasks-dir", help="Extra folder of task YAML files."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Grid: shard every run over Ray actors ('local' or a cluster address); actors are reused across runs."),
    ray_actors: int = typer.Option(2, "--ray-actors", help="Grid: Ray actors per engine."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Grid: reuse identical seeded requests from the generation cache."),
    params: Optional[list[str]] = typer.Option(
        None, "--params", help="Model parameter count for FLOPs when run.json lacks model_params: COUNT or MODEL=COUNT (repeatable)."
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write scaling plots (PNG and SVG) for samples, tokens and FLOPs axes."),
    curves: Optional[list[str]] = typer.Option(
        None, "--curves", help="Only curves whose name matches this glob, e.g. 'genrm@k*' (repeatable; default all)."
    ),
) -> None:
    """Run a compute-budget grid (or gather finished runs), plot accuracy against budget, and name the best
    strategy per budget.

    With --task, the grid models x tasks x temperatures x strategies x budgets is run first: selectors from one
    pool at the largest budget, particle filtering once per budget. Re-running the same command skips finished
    runs and resumes an interrupted one.
    """
    from tteval.leaderboard import collect_runs, optimal_rich_table, parse_params_option, require_rows, write_sweep

    folders: list[Path] = list(run_dirs or [])
    if task:
        from tteval.runner import RunConfig
        from tteval.sweep import grid_configs, parse_budgets, run_grid
        from tteval.tasks import parse_limit

        base = RunConfig(backend=backend, base_url=base_url, limit=parse_limit(limit), max_tokens=max_tokens, seed=seed,
                         verifier=verifier, verifications=verifications, pf_step_tokens=pf_step_tokens,
                         pf_max_steps=pf_max_steps, out=str(runs_dir), tasks_dir=str(tasks_dir) if tasks_dir else None,
                         ray=ray, ray_actors=ray_actors, cache=cache)  # fmt: skip
        configs = grid_configs(base, model or ["smollm2"], task, temperature or [0.7], strategy or ["sample"],
                               parse_budgets(budgets))  # fmt: skip
        folders += run_grid(configs, err)
    if not folders:
        raise TtevalError("give run folders to gather, or a grid to run with --task (see `tteval sweep --help`)")
    df = collect_runs(folders, parse_params_option(params), on_warning=_warn_line)
    if curves:
        import fnmatch

        require_rows(df, ", ".join(str(d) for d in folders))
        df = df[[any(fnmatch.fnmatchcase(str(s), g) for g in curves) for s in df["strategy"]]]
        if df.empty:
            raise TtevalError(f"no curve matches --curves {' '.join(curves)}")
    require_rows(df, ", ".join(str(d) for d in folders))
    result = write_sweep(df, out_dir, plots=plots)
    out.print(optimal_rich_table(result.optimal))
    written = [result.csv, *([result.parquet] if result.parquet else []), result.optimal_csv, *result.plots]
    out.print(f"{len(result.table)} points from {df['path'].nunique()} runs; wrote:")
    for path in written:
        out.print(f"  {path}", highlight=False, markup=False)


@app.command()
def report(
    root: Path = typer.Argument(Path("results"), help="Folder searched (any depth) for run folders."),
    out_file: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    title: str = typer.Option("tteval report", "--title", help="Page title."),
    params: Optional[list[str]] = typer.Option(
        None, "--params", help="Model parameter count for FLOPs when run.json lacks model_params: COUNT or MODEL=COUNT (repeatable)."
    ),
    max_problems: int = typer.Option(500, "--max-problems", help="Problems shown per run in the drill-down (filter and sort them on the page)."),
    max_candidates: int = typer.Option(64, "--max-candidates", help="Candidates shown per problem."),
    max_chars: int = typer.Option(2000, "--max-chars", help="Characters shown per completion."),
) -> None:
    """Write one self-contained offline HTML page: leaderboard, scaling plots and a per-problem drill-down."""
    from tteval.html_report import DrillLimits, write_report
    from tteval.leaderboard import collect_runs, parse_params_option, require_rows

    for name, value in (("--max-problems", max_problems), ("--max-candidates", max_candidates), ("--max-chars", max_chars)):
        if value < 1:
            raise TtevalError(f"{name} must be at least 1, got {value}")
    df = collect_runs(root, parse_params_option(params), on_warning=_warn_line)
    require_rows(df, str(root))
    path = write_report(df, out_file, DrillLimits(max_problems, max_candidates, max_chars), title=title)
    out.print(f"report: [bold]{path}[/] ({path.stat().st_size / 1024:,.0f} KiB, {df['path'].nunique()} runs)")


def _warn_line(message: str) -> None:
    """Print a one-line warning on stderr (skipped run folders)."""
    from rich.markup import escape

    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: run the typer app, turning user errors into one line on stderr and a non-zero exit."""
    # Shells start background jobs with SIGINT ignored, and Python keeps that: restore Ctrl-C -> KeyboardInterrupt
    # so an interrupted run always saves, says so, and prints the command that resumes it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer returns Ctrl-C's 130 instead of raising in this mode
            sys.exit(rc)
    except TtevalError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and aborts arrive here in non-standalone mode
        if isinstance(exc, _click_types("Exit")):
            sys.exit(exc.exit_code)
        if isinstance(exc, _click_types("Abort")):
            sys.exit(130)
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # prints the help
            sys.exit(exc.exit_code)
        if isinstance(exc, _click_types("UsageError")):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            err.print(f"[bold red]error:[/] {escape(exc.format_message() + hint)}", highlight=False, soft_wrap=True)
            sys.exit(2)
        if isinstance(exc, _click_types("ClickException")):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("TTEVAL_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')} (set TTEVAL_DEBUG=1 for the"
                  " traceback)", highlight=False, soft_wrap=True)  # fmt: skip
        sys.exit(1)


def _click_types(name: str) -> tuple[type, ...]:
    """click's exception class `name`, and typer's vendored copy of it (typer >= 0.2x raises those)."""
    import click

    found = [getattr(click.exceptions, name, None)]
    try:
        from typer._click import exceptions as vendored
    except ImportError:
        vendored = None
    found.append(getattr(vendored, name, None))
    return tuple(t for t in found if isinstance(t, type))


if __name__ == "__main__":
    main()
