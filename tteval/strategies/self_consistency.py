"""Self-consistency (Wang et al. 2023): the most common answer class wins; ties are split evenly."""

from __future__ import annotations

import numpy as np

from tteval.strategies.pool import Pool, vote


def majority_vote(pool: Pool, idx: np.ndarray) -> float:
    """Expected correctness of majority voting over candidates `idx` (invalid answers never win)."""
    return vote(pool, idx, np.ones(len(pool.answers)))


def weighted_vote(pool: Pool, idx: np.ndarray, weights: np.ndarray) -> float:
    """Majority voting where each candidate's vote counts `weights[i]` (e.g. a verifier's reward)."""
    return vote(pool, idx, np.asarray(weights, dtype=float))
