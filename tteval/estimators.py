"""Unbiased estimators of strategy@k from one pool of n >= k samples, and confidence intervals over problems.

All functions are pure numpy. Per-problem functions take one problem's arrays; task-level numbers are means over
problems with `summarize` giving the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.stats import norm

from tteval.errors import TtevalError


def comb_ratio(a: np.ndarray | int, k: int, n: np.ndarray | int) -> np.ndarray:
    """C(a, k) / C(n, k) = prod_{i<k} (a-i)/(n-i) for 0 <= a <= n (0 when a < k), as a sum of logs: stable for
    n in the thousands, where the binomials themselves overflow."""
    a = np.asarray(a, dtype=float)
    n = np.asarray(n, dtype=float)
    i = np.arange(k, dtype=float).reshape((k,) + (1,) * np.broadcast(a, n).ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.clip((a - i) / (n - i), 0.0, None)
        logs = np.log(terms)
    return np.where(a >= k, np.exp(logs.sum(axis=0)), 0.0)


def _check_k(n: np.ndarray | int, k: int) -> None:
    if k < 1:
        raise TtevalError(f"k must be at least 1, got {k}")
    if np.any(np.asarray(n) < k):
        raise TtevalError(f"k={k} exceeds the number of samples n={int(np.min(n))}: no unbiased estimate exists")


def pass_at_k(n: np.ndarray | int, c: np.ndarray | int, k: int) -> np.ndarray:
    """pass@k = 1 - C(n-c, k) / C(n, k) per problem (Chen et al. 2021, "Evaluating Large Language Models Trained
    on Code"); 1 when n - c < k. Vectorised over arrays n, c; k > n is an error."""
    n, c = np.asarray(n), np.asarray(c)
    _check_k(n, k)
    return 1.0 - comb_ratio(n - c, k, n)


def pass_at_k_curve(n: np.ndarray, c: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """pass@k for each k in ks: shape (len(ks), problems)."""
    return np.stack([pass_at_k(n, c, k) for k in ks])


def _rank_weights(n: int, k: int) -> np.ndarray:
    """w_r = C(r-1, k-1) / C(n, k) for ranks r = 1..n (ascending), by ENAMEL's backward recurrence."""
    w = np.zeros(n)
    w[n - 1] = k / n
    for r in range(n - 1, k - 1, -1):  # r is 1-based rank of w[r-1]
        w[r - 1] = w[r] * (1 - (k - 1) / r)
    return w


def eff_at_k(scores: Sequence[float], k: int) -> float:
    """eff@k = E[max of k scores drawn without replacement] = sum_r C(r-1,k-1)/C(n,k) e_(r) over ascending scores
    (Qiu et al., ICLR 2025, "How Efficient is LLM-Generated Code?", Rao-Blackwellised); equals pass@k on 0/1."""
    e = np.sort(np.asarray(scores, dtype=float))
    _check_k(len(e), k)
    return float(_rank_weights(len(e), k) @ e)


def eff_at_k_many(scores: Sequence[Sequence[float]], k: int) -> np.ndarray:
    """eff@k per problem."""
    return np.array([eff_at_k(s, k) for s in scores])


def hodges_lehmann(times: Sequence[float]) -> float:
    """Median of all Walsh averages (t_a + t_b)/2, a <= b (ENAMEL's per-test time estimator)."""
    t = np.asarray(times, dtype=float)
    i, j = np.triu_indices(len(t))
    return float(np.median((t[i] + t[j]) / 2))


def efficiency_score(
    level_times: Sequence[float | None],
    ref_level_times: Sequence[float],
    time_limit: float,
    hardness: Sequence[float] = (0, 3, 3, 4),
    failed: bool = False,
) -> float:
    """ENAMEL's per-sample efficiency: e_l = max(0, T - t_l) / (T - T*_l), weighted by hardness. A wrong answer
    scores 0; a timeout at level l (t_l None) right-censors: levels l, l+1, ... score 0. Not clipped above 1.
    Our reading: T is one limit per problem (alpha x the slowest reference level), level 0 only checks correctness."""
    if failed or (level_times and level_times[0] is None and hardness[0] == 0 and len(level_times) == 1):
        return 0.0
    scores = []
    censored = False
    for t, ref in zip(level_times, ref_level_times):
        if censored or t is None:
            censored = True
            scores.append(0.0)
        else:
            scores.append(max(0.0, time_limit - t) / max(time_limit - ref, 1e-12))
    h = np.asarray(hardness[: len(scores)], dtype=float)
    return float(np.dot(h, scores) / h.sum()) if h.sum() else 0.0


def best_of_k(rewards: Sequence[float], correct: Sequence[float], k: int) -> float:
    """Expected accuracy of the highest-reward candidate of a uniformly random k-subset, ties split evenly:
    sum_j (c_j/m_j) [C(n-A_j, k) - C(n-A_j-m_j, k)] / C(n, k) over score groups j (A_j samples score higher)."""
    return float(best_of_k_curve(rewards, correct, [k])[0])


def best_of_k_curve(rewards: Sequence[float], correct: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """best_of_k for every k in ks, sharing the O(n log n) grouping."""
    r = np.asarray(rewards, dtype=float)
    y = np.asarray(correct, dtype=float)
    n = len(r)
    values, inverse = np.unique(-r, return_inverse=True)  # groups in descending reward
    m = np.bincount(inverse, minlength=len(values)).astype(float)
    c = np.bincount(inverse, weights=y, minlength=len(values))
    above = np.concatenate([[0.0], np.cumsum(m)[:-1]])
    out = []
    for k in ks:
        _check_k(n, k)
        p = comb_ratio(n - above, k, n) - comb_ratio(n - above - m, k, n)
        out.append(float(np.sum(c / m * p)))
    return np.array(out)


def maj_at_k(answers: Sequence[int], correct: Sequence[bool], k: int) -> float:
    """Exact expected accuracy of majority voting over a uniformly random k-subset, ties broken uniformly.
    `answers` are class ids (-1 = no answer: never wins; a subset of only invalid answers scores 0)."""
    return float(maj_at_k_curve(answers, correct, [k])[0])


def maj_at_k_curve(answers: Sequence[int], correct: Sequence[bool], ks: Sequence[int]) -> np.ndarray:
    """maj@k for every k in ks by dynamic programming over answer classes (multivariate hypergeometric).

    For a correct class g with m_g members and j of them drawn, the other k-j draws must give every other valid
    class at most j votes; a draw with t other classes at exactly j votes wins with probability 1/(1+t). A DP over
    the other classes counts the ways by (items drawn, t), for all k at once."""
    a = np.asarray(answers)
    y = np.asarray(correct, dtype=bool)
    n = len(a)
    for k in ks:
        _check_k(n, k)
    kmax = max(ks)
    labels = sorted(set(int(x) for x in a if x >= 0))
    counts = {lab: int(np.sum(a == lab)) for lab in labels}
    good = [lab for lab in labels if y[a == lab].any()]
    n_invalid = int(np.sum(a < 0))
    totals = np.array([math.comb(n, k) for k in range(kmax + 1)], dtype=float)
    result = np.zeros(kmax + 1)
    for g in good:
        others = [counts[lab] for lab in labels if lab != g]
        for j in range(1, min(counts[g], kmax) + 1):
            dp = np.zeros((kmax + 1, len(others) + 1))  # dp[s, t]
            dp[0, 0] = 1.0
            for mo in others:
                new = np.zeros_like(dp)
                for cnt in range(0, min(mo, j) + 1):
                    w = math.comb(mo, cnt)
                    if cnt == j:
                        new[cnt:, 1:] += w * dp[: kmax + 1 - cnt, :-1]
                    else:
                        new[cnt:, :] += w * dp[: kmax + 1 - cnt, :]
                dp = new
            if n_invalid:
                inv = np.array([math.comb(n_invalid, cnt) for cnt in range(kmax + 1)], dtype=float)
                dp = np.stack([np.convolve(inv, dp[:, t])[: kmax + 1] for t in range(dp.shape[1])], axis=1)
            ways = dp @ (1.0 / (1.0 + np.arange(dp.shape[1])))  # ways[s] for s other draws
            for k in range(j, kmax + 1):
                result[k] += math.comb(counts[g], j) * ways[k - j]
    return np.array([result[k] / totals[k] for k in ks])


def resampled_at_k(select: Callable[[np.ndarray], float], n: int, k: int, reps: int = 200, seed: int = 0) -> tuple[float, float]:
    """Monte-Carlo strategy@k for any selector: mean credit over `reps` seeded random k-subsets and its standard
    error (exact, with se 0, when k == n)."""
    _check_k(n, k)
    if k == n:
        return float(select(np.arange(n))), 0.0
    rng = np.random.default_rng(seed)
    vals = np.array([select(np.sort(rng.choice(n, size=k, replace=False))) for _ in range(reps)])
    return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(reps)) if reps > 1 else 0.0


def weighted_maj_at_k(answers: Sequence[int], weights: Sequence[float], correct: Sequence[bool], k: int,
                      reps: int = 200, seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """Reward-weighted majority vote at k (sum of weights per answer class, ties split), by resampling."""
    a, w, y = np.asarray(answers), np.asarray(weights, dtype=float), np.asarray(correct, dtype=bool)

    def select(idx: np.ndarray) -> float:
        totals: dict[int, float] = {}
        for i in idx:
            if a[i] >= 0:
                totals[int(a[i])] = totals.get(int(a[i]), 0.0) + w[i]
        if not totals:
            return 0.0
        best = max(totals.values())
        winners = [c for c, t in totals.items() if t == best]
        return float(np.mean([y[a == c].any() for c in winners]))

    return resampled_at_k(select, len(a), k, reps, seed)


@dataclass(frozen=True)
class PassUntilResult:
    """A PassUntil estimate: `value` is None when the cap was reached first (censored: p < ~1/trials)."""

    value: float | None
    successes: int
    trials: int
    censored: bool


def pass_until(successes_needed: int, trials: int) -> float:
    """Unbiased pass rate from sampling until r >= 2 successes took K trials: (r-1)/(K-1) (Haldane's negative-
    binomial estimator). Stopping at the first success and reporting 1/K is biased upward: E[1/K] = -p ln p/(1-p)."""
    if successes_needed < 2:
        raise TtevalError("PassUntil needs at least 2 successes for an unbiased estimate ((r-1)/(K-1))")
    if trials < successes_needed:
        raise TtevalError(f"PassUntil: {trials} trials cannot contain {successes_needed} successes")
    return (successes_needed - 1) / (trials - 1)


def pass_until_result(successes: int, trials: int, successes_needed: int = 2) -> PassUntilResult:
    """PassUntil outcome of one instance: an estimate, or censored when fewer than r successes by the cap."""
    if successes < successes_needed:
        return PassUntilResult(None, successes, trials, True)
    return PassUntilResult(pass_until(successes_needed, trials), successes, trials, False)


def wilson_interval(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion: never a point, even at 0% or 100%."""
    if n <= 0:
        return 0.0, 1.0
    z = norm.ppf(1 - alpha / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lower = 0.0 if successes <= 0 else max(0.0, float(centre - half))
    upper = 1.0 if successes >= n else min(1.0, float(centre + half))
    return lower, upper


def bootstrap_ci(values: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lower, upper): percentile bootstrap over problems (seeded, one vectorised draw); Wilson for 0/1
    values, and Wilson on the mean when the bootstrap collapses to a point (all problems equal)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), 0.0, 1.0
    mean = float(v.mean())
    if np.all((v == 0) | (v == 1)):
        lo, hi = wilson_interval(float(v.sum()), v.size, alpha)
        return mean, lo, hi
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(reps, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    if hi - lo <= 1e-12:
        lo, hi = wilson_interval(mean * v.size, v.size, alpha)
    return mean, float(min(lo, mean)), float(max(hi, mean))


def summarize(values: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """{value, lower, upper, n} of a task-level mean over per-problem values, as written to metrics.json."""
    mean, lo, hi = bootstrap_ci(values, reps, alpha, seed)
    return {"value": mean, "lower": lo, "upper": hi, "n": int(len(values))}
