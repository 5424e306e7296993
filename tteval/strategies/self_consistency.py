"""Self-consistency (Wang et al. 2023) and weighted voting over one pool: the answer class with the most votes
(or the largest summed weight) wins; ties are split evenly, as RPC's and GenRM's reference evaluators do.

Invalid answers (class -1) never win unless every candidate in the subset is invalid, and then the credit is 0
(GenRM gives them vote weight -1 for the same effect). Class totals are summed in a canonical order, so a
selector's credit does not depend on the order of the candidates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.strategies.pool import INVALID, IndexLike, Pool, candidate_class_ok, indices


def class_totals(classes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct classes ascending, summed weight per class). Each class's weights are added in sorted order, so
    the totals are bit-identical for any permutation of the candidates (exact ties stay ties)."""
    order = np.lexsort((weights, classes))
    c, w = classes[order], weights[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    return c[starts], np.add.reduceat(w, starts)


def winner_classes(classes: np.ndarray, totals: np.ndarray, invalid_needs_positive: bool = False) -> np.ndarray:
    """The classes with the maximal total among valid classes; the -1 class only when no valid class exists.

    With `invalid_needs_positive` (RPC's rule) the -1 class also wins when it has a positive total and no valid
    class does; if nothing has a positive total, all valid classes tie."""
    valid = classes != INVALID
    if not valid.any():
        return classes[~valid]
    vt = totals[valid]
    best = vt.max()
    if invalid_needs_positive and best <= 0 and (~valid).any() and totals[~valid].max() > 0:
        return np.array([INVALID])
    return classes[valid][vt == best]


def credit(pool: Pool, ix: np.ndarray, winners: np.ndarray) -> float:
    """Expected correctness when one of the tied winning classes is picked uniformly (the -1 class earns 0)."""
    ok = candidate_class_ok(pool)
    sub_classes = pool.answers[ix]
    good = {int(c) for c in np.unique(sub_classes[ok[ix]])}
    return sum(1.0 for w in winners.tolist() if w in good) / len(winners)


def weighted_vote(pool: Pool, idx: IndexLike, weights: str | Sequence[float] | np.ndarray) -> float:
    """Credit of the answer class with the largest summed weight among candidates `idx`; `weights` are one
    non-negative value per pool candidate (or a reward name in `pool.rewards`)."""
    w = pool.reward(weights)
    if np.any(w < 0):
        raise TtevalError("vote weights must be non-negative")
    ix = indices(pool, idx)
    classes, totals = class_totals(pool.answers[ix], w[ix])
    return credit(pool, ix, winner_classes(classes, totals))


def majority_vote(pool: Pool, idx: IndexLike = None) -> float:
    """Credit of self-consistency over candidates `idx`: the most frequent valid answer class, ties split."""
    ix = indices(pool, idx)
    classes, counts = np.unique(pool.answers[ix], return_counts=True)
    return credit(pool, ix, winner_classes(classes, counts))


def vote_shares(pool: Pool, idx: IndexLike = None) -> dict[int, float]:
    """Each answer class's share of the votes among `idx` (self-consistency's confidence, for calibration)."""
    ix = indices(pool, idx)
    classes, counts = np.unique(pool.answers[ix], return_counts=True)
    return {int(c): float(m) / len(ix) for c, m in zip(classes, counts)}
