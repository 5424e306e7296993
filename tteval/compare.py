"""Is the gain real? A paired comparison of two runs on the problems both of them scored.

Per problem, each run's outcome for a metric (pass@k, maj@k, bon@k[scorer], pf@k) is computed from its samples
with the same estimators as metrics.json; the two runs are then compared problem by problem:
- the mean difference B - A with a 95% interval from a paired bootstrap (problems resampled together, seeded,
  so the interval is the same on every machine);
- a p-value: the exact McNemar test (a two-sided binomial test on the discordant problems) when every per-problem
  outcome is 0 or 1, else the Wilcoxon signed-rank test (scipy; zero differences dropped, Wilcoxon's rule).
The statistics are pure numpy/scipy functions; reading run folders is `compare_runs`; rendering is the CLI's.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tteval.errors import TtevalError

BOOTSTRAP_REPS = 10_000
METRIC_FORMS = ("pass@K, maj@K, bon@K[SCORER], genrm@K[V=v] or pf@K (K a budget, e.g. pass@1, maj@8, bon@4[genrm], "
                "genrm@16[V=8])")


# ---------------------------------------------------------------------------------------------- statistics


def paired_bootstrap(a: Sequence[float], b: Sequence[float], reps: int = BOOTSTRAP_REPS, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:  # fmt: skip
    """(mean of b - a, lower, upper): a percentile interval from resampling problems (pairs kept together)."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError("paired_bootstrap needs two equal-length, non-empty sequences")
    if len(d) < 2:
        return float(d.mean()), math.nan, math.nan  # one problem: no interval
    rng = np.random.default_rng(seed)
    means = np.empty(reps)
    for start in range(0, reps, 1000):  # bounded memory for large runs
        stop = min(reps, start + 1000)
        idx = rng.integers(0, len(d), size=(stop - start, len(d)))
        means[start:stop] = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2
    lower, upper = np.quantile(means, [tail, 1.0 - tail])
    return float(d.mean()), float(lower), float(upper)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> tuple[float, int, int]:
    """(two-sided p-value, problems only A got right, problems only B got right) for 0/1 outcomes: the exact
    binomial test of the discordant pairs against 1/2 (McNemar's exact test; 1.0 when none are discordant)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all()):
        raise ValueError("mcnemar_exact needs outcomes that are 0 or 1")
    only_a = int(((x == 1) & (y == 0)).sum())
    only_b = int(((x == 0) & (y == 1)).sum())
    return _binomial_two_sided(min(only_a, only_b), only_a + only_b), only_a, only_b


def _binomial_two_sided(low: int, n: int) -> float:
    """P(X <= low or X >= n - low) for X ~ Binomial(n, 1/2), low <= n/2: the exact sign test."""
    if n == 0:
        return 1.0
    log_half_n = -n * math.log(2.0)
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n) for i in range(low + 1))
    return float(min(1.0, 2.0 * tail))


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of b - a (zero differences dropped); None without scipy or when
    every difference is zero."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not np.any(d != 0):
        return None
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        return None
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def is_binary(values: Sequence[float]) -> bool:
    """Whether every outcome is 0 or 1 (then the exact McNemar test applies)."""
    return bool(np.isin(np.asarray(values, dtype=float), (0.0, 1.0)).all())


# ---------------------------------------------------------------------------------------------- per-problem outcomes


@dataclass(frozen=True)
class Metric:
    """A per-problem metric: pass@k, maj@k, bon@k[scorer], genrm@k[V=v] (scorer 'V=v') or pf@k, at budget k."""

    family: str
    k: int
    scorer: str = ""

    @property
    def name(self) -> str:
        return f"{self.family}@{self.k}" + (f"[{self.scorer}]" if self.scorer else "")


def parse_metric(text: str) -> Metric:
    """'pass@1', 'maj@8', 'bon@4[genrm]', 'genrm@16[V=8]', 'pf@4' -> Metric; anything else is a one-line error."""
    m = re.fullmatch(r"\s*(pass|maj|bon|genrm|pf)@(\d+)(?:\[([^\]]+)\])?\s*", text)
    bracket = (m.group(1) in ("bon", "genrm")) if m else False
    if not m or bracket != bool(m.group(3)) or int(m.group(2)) < 1 or (
        m.group(1) == "genrm" and not re.fullmatch(r"V=[1-9]\d*", m.group(3))
    ):
        raise TtevalError(f"unknown metric '{text}'; use {METRIC_FORMS}")
    return Metric(m.group(1), int(m.group(2)), m.group(3) or "")


def _classes(group: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Answer classes of one problem's samples: the recorded answer_class, else equal answer strings."""
    if all(isinstance(s.get("answer_class"), int) for s in group):
        return np.array([int(s["answer_class"]) for s in group])
    from tteval.estimators import answer_classes

    return answer_classes([None if s.get("answer") is None else str(s.get("answer")).strip() for s in group])


def problem_outcome(group: Sequence[Mapping[str, Any]], metric: Metric) -> float | None:
    """One problem's outcome for `metric` from its samples (None when the metric does not apply to it: fewer
    than k samples, or no sample with the scorer's score)."""
    from tteval import estimators as est

    correct = np.array([1.0 if s.get("correct") is True else 0.0 for s in group])
    n = len(group)
    if metric.family == "pf":
        chosen = [s for s in group if s.get("selected")]
        if not chosen or n != metric.k:
            return None
        return 1.0 if chosen[0].get("correct") is True else 0.0
    if metric.family == "genrm":  # best-of-k by GenRM's solution score over the samples with verification chains
        from tteval.metrics.pool_curves import genrm_scores

        verified = [i for i, s in enumerate(group) if isinstance(s.get("verifier_chain_scores"), list)]
        if len(verified) < metric.k:
            return None
        chains = [group[i]["verifier_chain_scores"] for i in verified]
        rewards = genrm_scores(chains, _classes(group)[verified], int(metric.scorer[2:]))
        return float(est.best_of_k(rewards, correct[verified], metric.k))
    if metric.family == "bon":
        scored = [i for i, s in enumerate(group) if _finite((s.get("scores") or {}).get(metric.scorer))]
        if len(scored) < metric.k:
            return None
        rewards = np.array([float(group[i]["scores"][metric.scorer]) for i in scored])
        if metric.scorer == "genrm":  # GenRM's reward of an invalid answer is 0 (its authors' set_invalid_to_zero)
            rewards = np.where(_classes(group)[scored] == -1, 0.0, rewards)
        return float(est.best_of_k(rewards, correct[scored], metric.k))
    if n < metric.k:
        return None
    if metric.family == "pass":
        return float(est.pass_at_k(n, int(correct.sum()), metric.k))
    return float(est.maj_at_k(_classes(group), correct, metric.k))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def outcomes(groups: Mapping[str, Sequence[Mapping[str, Any]]], metric: Metric) -> dict[str, float]:
    """Per-problem outcomes of a run (problems where the metric does not apply are left out)."""
    out = {}
    for tid, group in groups.items():
        value = problem_outcome(group, metric)
        if value is not None:
            out[tid] = value
    return out


# ---------------------------------------------------------------------------------------------- comparing runs


@dataclass
class PairedResult:
    """One metric compared over the problems both runs scored: means, B - A with its interval, and a p-value."""

    metric: str
    problems: int
    mean_a: float
    mean_b: float
    diff: float
    lower: float
    upper: float
    test: str
    p_value: float | None
    only_a: int | None = None  # binary outcomes: problems only A got right
    only_b: int | None = None
    better: int = 0  # problems where B > A
    worse: int = 0  # problems where B < A


@dataclass
class Comparison:
    """What `tteval compare` reports: the two runs, their shared problems and one PairedResult per metric."""

    run_a: str
    run_b: str
    task: str
    problems_a: int
    problems_b: int
    shared: int
    seed: int
    reps: int
    results: list[PairedResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_outcomes(metric: str, a: Mapping[str, float], b: Mapping[str, float], seed: int = 0,
                     reps: int = BOOTSTRAP_REPS) -> PairedResult:  # fmt: skip
    """Compare two runs' per-problem outcomes on their shared problems (sorted by task id)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise TtevalError(f"{metric}: the two runs share no problem where {metric} applies")
    x = np.array([a[t] for t in shared])
    y = np.array([b[t] for t in shared])
    diff, lower, upper = paired_bootstrap(x, y, reps=reps, seed=seed)
    common = dict(metric=metric, problems=len(shared), mean_a=float(x.mean()), mean_b=float(y.mean()), diff=diff,
                  lower=lower, upper=upper, better=int((y > x).sum()), worse=int((y < x).sum()))  # fmt: skip
    if is_binary(x) and is_binary(y):
        p, only_a, only_b = mcnemar_exact(x, y)
        return PairedResult(**common, test="McNemar exact", p_value=p, only_a=only_a, only_b=only_b)
    return PairedResult(**common, test="Wilcoxon signed-rank", p_value=wilcoxon_p(x, y))


def _read_run(folder: Path) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """(task, samples grouped by problem) of a run folder, through the run-folder readers, or a one-line error."""
    from tteval.records import group_by_problem, read_run_meta, read_samples

    folder = Path(folder)
    if not folder.is_dir():
        raise TtevalError(f"no such run folder: {folder}")
    config = read_run_meta(folder).config
    if not isinstance(config, dict) or not config:
        raise TtevalError(f"{folder / 'run.json'} is not a tteval run.json (no config)")
    path = folder / "samples.jsonl"
    if not path.is_file():
        raise TtevalError(f"{folder} has no samples.jsonl: nothing to compare problem by problem")
    samples = [r.to_dict() for r in read_samples(path, lenient=True).records]  # a torn last line is left out
    return str(config.get("task", "?")), group_by_problem(samples)


def compare_runs(run_a: str | Path, run_b: str | Path, metrics: Sequence[str] = ("pass@1",), seed: int = 0,
                 reps: int = BOOTSTRAP_REPS) -> Comparison:  # fmt: skip
    """Compare two run folders problem by problem on each metric ('pass@1', 'maj@8', 'bon@4[genrm]', 'pf@4'):
    B - A with a seeded paired-bootstrap 95% interval, and an exact McNemar (0/1 outcomes) or Wilcoxon p-value."""
    parsed = [parse_metric(m) for m in metrics]
    if not parsed:
        raise TtevalError(f"give at least one --metric ({METRIC_FORMS})")
    task_a, groups_a = _read_run(Path(run_a))
    task_b, groups_b = _read_run(Path(run_b))
    if task_a != task_b:
        raise TtevalError(f"the runs are on different tasks ({task_a} and {task_b}): a paired test needs the same problems")
    shared = sorted(set(groups_a) & set(groups_b))
    if not shared:
        raise TtevalError(f"the runs share no problem ({len(groups_a)} and {len(groups_b)} problems, none in common)")
    result = Comparison(str(run_a), str(run_b), task_a, len(groups_a), len(groups_b), len(shared), seed, reps)
    for metric in parsed:
        a, b = outcomes(groups_a, metric), outcomes(groups_b, metric)
        if not a or not b:
            which = "A" if not a else "B"
            raise TtevalError(f"{metric.name} does not apply to run {which} (too few samples for k={metric.k}, "
                              "or no such scorer or particle-filter selection)")  # fmt: skip
        result.results.append(compare_outcomes(metric.name, a, b, seed=seed, reps=reps))
    return result
