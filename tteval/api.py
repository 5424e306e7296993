"""tteval's Python API: the estimators on plain Python values, a run from Python, and run folders as a DataFrame.

`from tteval import pass_at_k, maj_at_k, best_of_k, eff_at_k, summarize, evaluate, load_runs, compare_runs` (imported lazily by
`tteval/__init__.py`, so `import tteval` stays cheap). The estimators are those of `tteval.estimators`; here answers
may be any hashable values (strings, numbers, tuples), with None or "" meaning "no valid answer".
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tteval import estimators as est
from tteval.estimators.majority import answer_classes


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct among n samples (Chen et al. 2021)."""
    return float(est.pass_at_k(n, c, k))


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[float], k: int) -> float:
    """Exact expected accuracy of a majority vote over a random k-subset of one problem's samples."""
    return est.maj_at_k(answer_classes(answers), correct, k)


def best_of_k(rewards: Sequence[float], correct: Sequence[float], k: int) -> float:
    """Exact expected correctness of the highest-reward sample of a random k-subset (ties split evenly)."""
    return est.best_of_k(rewards, correct, k)


def eff_at_k(scores: Sequence[float], k: int) -> float:
    """ENAMEL's unbiased eff@k of one problem's efficiency scores."""
    return est.eff_at_k(scores, k)


def summarize(values: Sequence[float], seed: int = 0) -> dict[str, float | int | str]:
    """Task-level mean of per-problem values with its 95% interval, as metrics.json writes it."""
    return est.summarize(values, seed=seed)


def evaluate(**options: Any) -> dict[str, Any]:
    """Run what `tteval run` runs (keyword options as `tteval run`'s, RunConfig.of's flat names, e.g. task, n, limit, strategy) and return
    its metrics.json as a dict, with the run folder under "run_dir". Resumes like the CLI when re-run."""
    from tteval.config import RunConfig
    from tteval.records import read_metrics
    from tteval.runner import execute

    run = execute(RunConfig.of(**options))  # an unknown option is one line naming the known ones
    return {**read_metrics(run.path).to_dict(), "run_dir": str(run.path)}


def load_runs(paths: str | Path | Iterable[str | Path]) -> Any:
    """One tidy pandas row per curve point of every run folder below `paths` (what `tteval leaderboard` reads)."""
    from tteval.collect import collect_runs

    roots = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    return collect_runs(roots)


def compare_runs(run_a: str | Path, run_b: str | Path, metrics: Sequence[str] = ("pass@1",), seed: int = 0) -> Any:
    """Compare two run folders problem by problem (what `tteval compare` prints): per metric ('pass@1', 'maj@8',
    'bon@4[genrm]'), B - A with a seeded paired-bootstrap 95% interval and an exact McNemar or Wilcoxon p-value."""
    from tteval.compare import compare_runs as compare

    return compare(run_a, run_b, metrics, seed=seed)
