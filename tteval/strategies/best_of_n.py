"""Best-of-N and weighted best-of-N by a scorer's reward, and PRM step aggregation.

Best-of-N picks the single candidate with the highest reward (ties split evenly, the expectation of GenRM's
random tie-breaking). Weighted best-of-N (search-and-learn; Snell et al. 2024) sums the rewards of each answer
class and picks the largest sum. A PRM scores each reasoning step; `aggregate_steps` turns those into one reward
(search-and-learn's options "last", "min", "prod", plus "mean").
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.strategies.pool import INVALID, IndexLike, Pool, indices
from tteval.strategies.self_consistency import weighted_vote

AGGREGATIONS = ("last", "min", "prod", "mean")


def best_of_n(
    pool: Pool,
    idx: IndexLike,
    rewards: str | Sequence[float] | np.ndarray,
    invalid_reward: float | None = None,
) -> float:
    """Expected correctness of the highest-reward candidate among `idx`, ties split evenly. `rewards`: one value
    per pool candidate, or a name in `pool.rewards`. `invalid_reward` replaces the reward of candidates without
    an answer (GenRM uses 0.0); None uses the rewards as given."""
    r = pool.reward(rewards)
    ix = indices(pool, idx)
    rs = r[ix]
    if invalid_reward is not None:
        rs = np.where(pool.answers[ix] == INVALID, float(invalid_reward), rs)
    tied = ix[rs == rs.max()]
    return float(np.count_nonzero(pool.correct[tied])) / len(tied)


def weighted_best_of_n(pool: Pool, idx: IndexLike, rewards: str | Sequence[float] | np.ndarray) -> float:
    """Expected correctness of the answer class with the largest summed reward among `idx` (a reward-weighted
    vote; invalid answers never win unless all are invalid)."""
    return weighted_vote(pool, idx, rewards)


def aggregate_steps(step_scores: Sequence[float], how: str = "last") -> float:
    """One reward from a PRM's per-step scores: the last step's, the minimum, the product or the mean."""
    if how not in AGGREGATIONS:
        raise TtevalError(f"unknown step aggregation '{how}'; choose one of {', '.join(AGGREGATIONS)}")
    s = [float(x) for x in step_scores]
    if not s:
        raise TtevalError("cannot aggregate an empty list of step scores")
    if not all(math.isfinite(x) for x in s):
        raise TtevalError("step scores must be finite numbers")
    if how == "last":
        return s[-1]
    if how == "min":
        return min(s)
    if how == "prod":
        return math.prod(s)
    return math.fsum(s) / len(s)
