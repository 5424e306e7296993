"""Best-of-N and weighted best-of-N by a scorer's reward, and PRM step aggregation (Snell et al. 2024)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.strategies.pool import Pool, vote

AGGREGATIONS = ("last", "min", "prod", "mean")


def best_of_n(pool: Pool, idx: np.ndarray, rewards: np.ndarray) -> float:
    """Expected correctness of the highest-reward candidate among `idx`, ties split evenly."""
    r = np.asarray(rewards, dtype=float)[idx]
    tied = np.asarray(idx)[r == r.max()]
    return float(pool.correct[tied].mean())


def weighted_best_of_n(pool: Pool, idx: np.ndarray, rewards: np.ndarray) -> float:
    """The answer class with the largest summed reward wins (search-and-learn's weighted best-of-N)."""
    return vote(pool, idx, np.asarray(rewards, dtype=float))


def aggregate_steps(step_scores: Sequence[float], how: str = "last") -> float:
    """One reward from a PRM's per-step scores: last, min, prod or mean."""
    s = np.asarray(step_scores, dtype=float)
    if how not in AGGREGATIONS:
        raise TtevalError(f"unknown step aggregation '{how}'; choose one of {', '.join(AGGREGATIONS)}")
    if s.size == 0:
        return 0.0
    return float({"last": s[-1], "min": s.min(), "prod": s.prod(), "mean": s.mean()}[how])
