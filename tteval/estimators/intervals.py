"""Intervals over problems: Wilson for 0/1 outcomes, a seeded percentile bootstrap otherwise, and `summarize`."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
# scipy.special, not scipy.stats (half a second of start-up): ndtri is norm.ppf and betaincinv beta.ppf, bit for bit
from scipy.special import ndtri

from tteval.errors import TtevalError
from tteval.estimators._checks import _CHUNK_CELLS, _clip, _vector


def wilson_interval(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for a proportion successes/n: (p + z^2/2n -+ z sqrt(p(1-p)/n +
    z^2/4n^2)) / (1 + z^2/n). Never a point: at 0/n it is [0, z^2/(n+z^2)], at n/n [n/(n+z^2), 1]."""
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise TtevalError(f"wilson_interval needs n >= 1 trials, got {n!r}")
    if not 0 < alpha < 1:
        raise TtevalError(f"alpha must be in (0, 1), got {alpha}")
    if not (math.isfinite(successes) and -1e-9 <= successes <= n + 1e-9):
        raise TtevalError(f"successes must lie in [0, n={n}], got {successes!r}")
    z = float(ndtri(1 - alpha / 2))
    phat = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if phat == 0 else max(0.0, centre - half)
    hi = 1.0 if phat == 1 else min(1.0, centre + half)
    return lo, hi


def _interval(values: Sequence[float], reps: int, alpha: float, seed: int) -> tuple[float, float, float, str]:
    v = _vector(values, "per-problem values")
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise TtevalError(f"reps must be a positive integer, got {reps!r}")
    if not 0 < alpha < 1:
        raise TtevalError(f"alpha must be in (0, 1), got {alpha}")
    n, mean = v.size, float(_clip(v.mean(), v.min(), v.max()))
    if np.all((v == 0) | (v == 1)):
        lo, hi = wilson_interval(float(v.sum()), n, alpha)
        return mean, lo, hi, "wilson"
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n)
    means = np.concatenate(
        [v[rng.integers(0, n, size=(min(rows, reps - i), n))].mean(axis=1) for i in range(0, reps, rows)]
    )
    lo, hi = (float(x) for x in np.quantile(means, [alpha / 2, 1 - alpha / 2]))
    bounded = bool(np.all((v >= 0) & (v <= 1)))
    if bounded and (lo <= 0.0 or hi >= 1.0 or hi - lo <= 1e-12):
        lo, hi = wilson_interval(mean * n, n, alpha)
        return mean, lo, hi, "wilson-mean"
    return mean, min(lo, mean), max(hi, mean), "bootstrap"


def bootstrap_ci(
    values: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lower, upper) of the mean over problems, (1 - alpha) two-sided, boundary-aware.

    * 0/1 per-problem values (e.g. pass@1 from one sample): the Wilson score interval (successes, n problems),
      which never collapses to a point at 0% or 100% (LME #4070: a stderr of exactly 0 at 0%).
    * Other values: percentile bootstrap over problems, seeded, one (reps x problems) index draw (split in
      chunks only above 4M cells). If the values lie in [0, 1] and the bootstrap interval reaches 0 or 1 or has
      zero width (the sample shows no spread near a boundary), it falls back to Wilson on the mean with
      n = number of problems, the widest interval any [0, 1] variable with that mean can need.
    * Values outside [0, 1] (e.g. eff@k above 1) keep the bootstrap interval, which is a point if all are equal.
    """
    mean, lo, hi, _ = _interval(values, reps, alpha, seed)
    return mean, lo, hi


def summarize(
    values: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict[str, float | int | str]:
    """{value, lower, upper, n, interval} of a task-level mean over per-problem values, as written to metrics.json
    (`interval` names the method: "wilson", "wilson-mean" or "bootstrap"; see `bootstrap_ci`)."""
    mean, lo, hi, method = _interval(values, reps, alpha, seed)
    return {"value": mean, "lower": lo, "upper": hi, "n": int(np.asarray(values).size), "interval": method}
