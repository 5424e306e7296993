"""Compute-budget sweeps: expand a grid (models x tasks x temperatures x strategies x budgets) into runs and run them.

Selectors need one pool per (model, task, temperature) at the largest budget: every smaller k is estimated from it.
Searchers (particle filtering) need one run per budget. Runs are named by their configuration, so re-running a
sweep skips the finished runs and resumes an interrupted one. Runs that share an engine (same backend and model)
are run back to back on ONE loaded engine (a local backend, or the same Ray actors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape

from tteval.bounds import MAX_SAMPLES
from tteval.errors import TtevalError
from tteval.backends.registry import engine_key
from tteval.config import RunConfig
from tteval.runner import execute, log_lines, run_folder, start_engines
from tteval.strategies.registry import STRATEGIES

GRID_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.in_sweeps)


def parse_budgets(text: str) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8]; every budget a positive integer."""
    try:
        values = sorted({int(x) for x in text.replace(" ", "").split(",") if x})
    except ValueError:
        raise TtevalError(f"--budgets must be comma-separated integers like 1,2,4,8, got '{text}'") from None
    if not values or values[0] < 1:
        raise TtevalError(f"--budgets must be positive integers, got '{text}'")
    if values[-1] > MAX_SAMPLES:
        raise TtevalError(f"--budgets must be at most {MAX_SAMPLES}, got {values[-1]}")
    return values


def grid_configs(base: RunConfig, models: Sequence[str], tasks: Sequence[str], temperatures: Sequence[float],
                 strategies: Sequence[str], budgets: Sequence[int]) -> list[RunConfig]:  # fmt: skip
    """The runs of a sweep, grouped by model so that each engine is loaded once."""
    for s in strategies:
        if s not in GRID_STRATEGIES:
            raise TtevalError(f"unknown sweep strategy '{s}'; choose from: {', '.join(GRID_STRATEGIES)}")
    configs = []
    for model in models:
        for task in tasks:
            for temperature in temperatures:
                for strategy in strategies:
                    ns = sorted(set(budgets)) if STRATEGIES[strategy].searcher else [max(budgets)]
                    for n in ns:
                        configs.append(base.replace(model=model, task=task, temperature=temperature, strategy=strategy, n=n))
    for c in configs:
        c.validate()
    return configs


def run_grid(configs: Sequence[RunConfig], console: Console) -> list[Path]:
    """Run (or resume, or skip when finished) every configuration; return the run folders in grid order."""
    folders: list[Path] = []
    workers: Any = None
    key = None
    for config in configs:
        config.check_fewshot()
    try:
        for i, config in enumerate(configs, 1):
            folder = run_folder(config)
            label = escape(f"[{i}/{len(configs)}] {config.model} · {config.task} · {config.strategy.name} "
                           f"n={config.sampling.n} T={config.sampling.temperature}")
            if _finished(folder):
                console.print(f"{label}: [green]done[/] ({escape(str(folder))})", highlight=False)
                folders.append(folder)
                continue
            if engine_key(config) != key:  # one engine alive at a time (GPU memory; a local Ray's CPU slots)
                if workers is not None:  # shut down, and say whether GPU memory came back, before the next starts
                    workers, old = None, workers
                    log_lines(old.close(), console)
                workers, key = start_engines(config), engine_key(config)
            console.print(f"{label}: running", highlight=False)
            folders.append(execute(config, console=console, engines=workers).path)
    except KeyboardInterrupt:
        console.print(f"[yellow]sweep interrupted[/]: {len(folders)}/{len(configs)} runs finished; "
                      "re-run the same command to continue", highlight=False)  # fmt: skip
        raise
    finally:
        if workers is not None:
            log_lines(workers.close(), console)
    return folders


def _finished(folder: Path) -> bool:
    """A run folder whose run.json says complete and whose metrics.json exists."""
    from tteval.records import read_run_meta

    try:
        return read_run_meta(folder).status == "complete" and (folder / "metrics.json").is_file()
    except TtevalError:
        return False
