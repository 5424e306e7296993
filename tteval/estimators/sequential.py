"""PassUntil (Hu et al., ICLR 2024): Haldane's unbiased negative-binomial estimate, censored problems bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
# scipy.special, not scipy.stats (half a second of start-up): ndtri is norm.ppf and betaincinv beta.ppf, bit for bit
from scipy.special import betaincinv

from tteval.errors import TtevalError


def pass_until(successes_needed: int, trials: int) -> float:
    """Unbiased pass rate from sampling one instance until r successes, which took K trials: (r-1)/(K-1).

    Haldane's unbiased estimator for the negative binomial (standard result, checked by exact expectation in our
    tests; PassUntil idea from Hu et al. 2024, "Predicting Emergent Abilities with Infinite Resolution
    Evaluation", whose exact estimator we could not verify). Why not 1/K after the first success (r = 1)? K is
    geometric, and E[1/K] = sum_K p (1-p)^(K-1) / K = -p ln p / (1-p) > p: Jensen's inequality for the convex
    1/K, e.g. p = 0.01 gives 0.0465, a 4.7x overestimate. With r = 1 the only unbiased estimator is 1[K = 1]
    (returned here, unbiased but nearly useless), so use r >= 2. The MLE r/K is also biased upward.
    """
    r, t = int(successes_needed), int(trials)
    if r < 1:
        raise TtevalError(f"PassUntil needs at least 1 success to stop at, got {successes_needed}")
    if t < r:
        raise TtevalError(f"PassUntil: {trials} trials cannot contain {successes_needed} successes")
    if r == 1:
        return 1.0 if t == 1 else 0.0
    return (r - 1) / (t - 1)


@dataclass(frozen=True)
class PassUntilResult:
    """One instance's PassUntil outcome. When the cap came first (fewer than r successes) the estimate is
    `value=None`, `censored=True` and `upper_bound` is a one-sided Clopper-Pearson (1 - alpha) upper bound on p
    (~3/K with no success: the rule of three); censored instances must be reported, never imputed."""

    successes_needed: int
    successes: int
    trials: int
    value: float | None
    censored: bool
    upper_bound: float | None = None


def pass_until_result(successes: int, trials: int, successes_needed: int = 2, alpha: float = 0.05) -> PassUntilResult:
    """PassUntil result of an instance sampled until `successes_needed` successes or a cap of `trials` trials."""
    s, t, r = int(successes), int(trials), int(successes_needed)
    if not 0 < alpha < 1:
        raise TtevalError(f"alpha must be in (0, 1), got {alpha}")
    if t < 1 or s < 0 or s > t:
        raise TtevalError(f"PassUntil: {successes} successes in {trials} trials is impossible")
    if s > r:
        raise TtevalError(f"PassUntil stops at the {r}th success; {successes} successes were recorded")
    if s == r:
        return PassUntilResult(r, s, t, pass_until(r, t), False, None)
    upper = 1.0 if s == t else float(betaincinv(s + 1, t - s, 1 - alpha))
    return PassUntilResult(r, s, t, None, True, upper)


def pass_until_from_outcomes(
    outcomes: Sequence[bool], successes_needed: int = 2, alpha: float = 0.05
) -> PassUntilResult:
    """PassUntil from an ordered sequence of i.i.d. trial outcomes (e.g. a pool in sample order): stop at the r-th
    success; if the sequence ends first it is the cap, and the result is censored."""
    o = np.asarray(outcomes, dtype=bool)
    if o.ndim != 1 or o.size == 0:
        raise TtevalError("outcomes must be a non-empty 1-D sequence")
    hits = np.flatnonzero(o)
    r = int(successes_needed)
    if r < 1:
        raise TtevalError(f"PassUntil needs at least 1 success to stop at, got {successes_needed}")
    if hits.size >= r:
        return pass_until_result(r, int(hits[r - 1]) + 1, r, alpha)
    return pass_until_result(int(hits.size), int(o.size), r, alpha)
