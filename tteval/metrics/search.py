"""Metrics of runs whose samples are not a pool: particle filtering's own selections, PassUntil's sequential stop."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

import tteval.estimators as est
from tteval.metrics.problems import Points, Problems, point, result
from tteval.records import SampleRecord


def pf_curves(pr: Problems) -> dict[str, Points]:
    """Particle filtering: accuracy of the selected particle (argmax reward) and of a reward-weighted vote; a
    problem's cost is its whole search (every step's policy and verifier tokens), recorded on its samples."""
    sel, vote, tokens, seed = [], [], [], pr.seed
    for g, a, y in zip(pr.groups.values(), pr.classes, pr.correct):
        chosen = [i for i, s in enumerate(g) if s.selected]
        sel.append(float(y[chosen[0]]) if chosen else 0.0)
        w = np.array([float((s.scores or {}).get("prm", 0.0)) for s in g])
        vote.append(float(est.weighted_vote_credit(a, w, y, np.arange(len(g))[None, :])[0]))
        tokens.append((g[0].problem_policy_tokens or 0) + (g[0].problem_verifier_tokens or 0))
    t = float(np.mean(tokens))
    iterations = [1 if g[0].pf_iterations is None else int(g[0].pf_iterations) for g in pr.groups.values()]
    k = pr.n_min * max(iterations)  # particle Gibbs: N x T generations
    return {
        "pf@k": [point(np.array(sel), seed, k=k, tokens=t)],
        "pf-vote@k": [point(np.array(vote), seed, k=k, tokens=t)],
    }


def pass_until_metrics(task: str, groups: dict[str, list[SampleRecord]], r: int, cap: int, seed: int) -> dict[str, Any]:
    """PassUntil (sample until r successes or the cap): per-problem (r-1)/(K-1), averaged over uncensored problems.

    A problem that hit the cap first is censored: it is reported (count, each one's Clopper-Pearson upper bound),
    never imputed. `value` averages the uncensored problems; with every problem censored it is 0 and `upper` is
    the mean upper bound (about 3/cap each, the rule of three)."""
    results = {tid: est.pass_until_from_outcomes([bool(s.correct) for s in g], r) for tid, g in groups.items()}
    values = np.array([x.value for x in results.values() if not x.censored], dtype=float)
    bounds = [x.upper_bound for x in results.values() if x.censored]
    tokens = float(np.mean([sum(s.num_tokens or 0 for s in g) for g in groups.values()]))
    trials = float(np.mean([len(g) for g in groups.values()]))
    extra = {"k": cap, "tokens": tokens, "censored": len(bounds), "mean_samples": trials}
    if values.size:
        pt = point(values, seed, **extra)
    else:
        pt = {"value": 0.0, "lower": 0.0, "upper": float(np.mean(bounds)), "n": 0, "interval": "censored", **extra}
    if bounds:  # what the censored problems could add at most: each at its upper bound
        pt["upper_if_censored_at_bound"] = float((values.sum() + sum(bounds)) / len(results))
    problems = [{"task_id": tid, **{k: v for k, v in asdict(x).items() if k != "successes_needed"}} for tid, x in results.items()]
    curves = {"pass-until": [pt]}
    out = result(task, groups, cap, cap, tokens / max(trials, 1e-9), {}, curves)
    out["pass_until"] = {"successes_needed": r, "cap": cap, "problems": problems}
    return out
