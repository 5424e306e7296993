"""Best-of-k by a reward: the exact tie-aware expectation over all k-subsets (GenRM's `verifier_at_k` without shuffles)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tteval.estimators._checks import _check_ks, _clip, _pair
from tteval.estimators.order import _order_sum


def best_of_k(rewards: Sequence[float], correct: Sequence[float], k: int) -> float:
    """Exact expected utility of the highest-reward sample of a uniformly random k-subset, ties split evenly.

    Tie-aware closed form (ALGORITHMS.md section 5.4; the exact form of GenRM's `verifier_at_k`, which averages 100
    random tie-breaking shuffles, Singhi et al. 2025): with reward groups G_1 > G_2 > ... of sizes m_j, utility sums
    c_j and A_j samples above group j, BoN@k = sum_j (c_j/m_j) [C(n-A_j, k) - C(n-A_j-m_j, k)] / C(n, k).
    Since [C(a, k) - C(a-m, k)]/C(n, k) is the sum of the order weights C(r-1,k-1)/C(n,k) over the group's ranks,
    this equals eff@k's weighted sum over samples sorted by reward with each utility replaced by its tie group's
    mean: O(n log n), stable weights, no binomials. `correct` may be a float utility (e.g. in [0, 1]).
    """
    return float(best_of_k_curve(rewards, correct, [k])[0])


def best_of_k_curve(rewards: Sequence[float], correct: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """best_of_k for every k in ks (one sort and grouping shared across k; weights cached per (n, ks))."""
    r, y = _pair(rewards, correct, "rewards", "correct", allow_inf=True)
    ks_arr = _check_ks(ks, r.size)
    _, inv, counts = np.unique(r, return_inverse=True, return_counts=True)
    group_mean = np.bincount(inv, weights=y) / counts
    return _clip(_order_sum(r.size, ks_arr, np.repeat(group_mean, counts)), y.min(), y.max())


def best_of_k_many(
    rewards: Sequence[Sequence[float]], correct: Sequence[Sequence[float]], ks: Sequence[int]
) -> np.ndarray:
    """best_of_k_curve for each problem: shape (problems, len(ks))."""
    return np.array([best_of_k_curve(r, y, ks) for r, y in zip(rewards, correct, strict=True)])
