"""Task-level metrics of a candidate pool: a registry of curves over one `Pool` per problem, each with intervals.

Samples are grouped by problem once (`Problems`); each `Curve` declares the sample fields it reads (fields of
`tteval.records.SampleRecord`) and when it applies; which curves a run yields follows from its strategy
(`curves_for`). Every point is {k, value, lower, upper, tokens, ...}.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tteval.metrics.efficiency import eff_curves
from tteval.metrics.pool_curves import (
    all_bon_curves,
    genrm_curves,
    has_chains,
    has_logprobs,
    maj_curves,
    pass_curves,
    rpc_curves,
    scorers,
)
from tteval.metrics.problems import Curve, Points, Problems, budgets, result
from tteval.metrics.search import pass_until_metrics, pf_curves

__all__ = ["CURVE_FAMILIES", "POOL_CURVES", "SEARCH_CURVES", "Curve", "Problems", "budgets", "compute_metrics", "curve_family",
           "curves_for"]

_ALWAYS = lambda pr: True  # noqa: E731

# Curves of a pool of i.i.d. candidates (selectors), in the order metrics.json lists them.
POOL_CURVES: tuple[Curve, ...] = (
    Curve("pass@k", ("correct", "num_tokens"), _ALWAYS, pass_curves),
    Curve("maj@k", ("answer_class", "correct"), _ALWAYS, maj_curves),
    Curve("bon@k[scorer]", ("scores", "answer_class", "correct"), lambda pr: bool(scorers(pr)), all_bon_curves),
    Curve("eff@k", ("grading", "correct"), _ALWAYS, eff_curves),
    Curve("ppl@k, rpc@k", ("logprob", "num_tokens", "completion", "answer_class", "correct"), has_logprobs,
          lambda pr: rpc_curves(pr)),
    Curve("genrm@k[V=v], wsc@k[V=v]", ("verifier_chain_scores", "verifier_tokens", "answer_class", "correct"),
          has_chains, lambda pr: genrm_curves(pr, pr.genrm_lambda)),
)  # fmt: skip

# A searcher's final particles are not i.i.d. samples: only the search's own selections are meaningful.
SEARCH_CURVES: tuple[Curve, ...] = (
    Curve("pf@k, pf-vote@k", ("selected", "scores", "answer_class", "correct", "problem_policy_tokens",
                              "problem_verifier_tokens", "pf_iterations"), _ALWAYS, lambda pr: pf_curves(pr)),
)  # fmt: skip


# Curve families by what a strategy's samples are: an i.i.d. pool, or a searcher's particles. PassUntil's
# sequentially stopped samples have their own estimate (`pass_until_metrics`), not curves over a pool.
CURVE_FAMILIES: dict[str, tuple[Curve, ...]] = {"pool": POOL_CURVES, "search": SEARCH_CURVES, "pass_until": ()}


def curve_family(strategy: str) -> str:
    """"pool", "search" or "pass_until": the family the strategy registry declares for `strategy` (an unknown
    name, e.g. a scored pool's, is a pool)."""
    from tteval.strategies.registry import STRATEGIES

    known = STRATEGIES.get(strategy)
    return known.curves if known is not None else "pool"


def curves_for(strategy: str) -> tuple[Curve, ...]:
    """The curves a run of `strategy` yields."""
    return CURVE_FAMILIES[curve_family(strategy)]


def compute_metrics(
    samples: Sequence[Mapping[str, Any]], task: str, n: int | None = None, seed: int = 0, config: Any = None,
    genrm_lambda: float | None = None, strategy: str | None = None,
) -> dict[str, Any]:
    """Curves for every estimator the pool supports, each point {k, value, lower, upper, tokens}.

    `strategy` (else `config.strategy`, the run's RunConfig, else "sample") picks the curves: particle filtering's
    own selections, PassUntil's sequential estimate (with `config`'s r), or every pool curve the samples support.
    `genrm_lambda` fixes GenRM's lambda (tokens per verification / tokens per solution) instead of measuring it."""
    family = curve_family(strategy or (config.strategy.name if config is not None else "sample"))
    pr = Problems.of(samples, seed, genrm_lambda)
    if not pr.groups:
        return {"task": task, "num_problems": 0, "n": 0, "curves": {}, "summary": {}}
    if family == "pass_until":
        return pass_until_metrics(task, pr.groups, config.strategy.until_successes, int(config.sampling.n), seed)
    curves: dict[str, Points] = {}
    for curve in CURVE_FAMILIES[family]:
        if curve.applies(pr):
            curves.update(curve.compute(pr))
    return result(task, pr.groups, pr.n_min, n, pr.mean_tokens, pr.compute, curves)
