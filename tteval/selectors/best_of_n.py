"""Best-of-N and weighted best-of-N by a scorer's reward, and PRM step aggregation.

Best-of-N picks the single candidate with the highest reward (ties split evenly, the expectation of GenRM's
random tie-breaking). Weighted best-of-N (search-and-learn; Snell et al. 2024) sums the rewards of each answer
class and picks the largest sum. A PRM's per-step scores become one reward by
`tteval.verifiers.reward.aggregate_steps` (search-and-learn's "last", "min", "prod", plus "mean"), re-exported here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tteval.selectors.pool import INVALID, IndexLike, Pool, indices
from tteval.selectors.self_consistency import weighted_vote
from tteval.verifiers.reward import AGGREGATIONS, aggregate_steps

__all__ = ["AGGREGATIONS", "aggregate_steps", "best_of_n", "weighted_best_of_n"]

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
