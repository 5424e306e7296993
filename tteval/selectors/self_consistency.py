"""Self-consistency (Wang et al. 2023) and weighted voting over one pool: the answer class with the most votes
(or the largest summed weight) wins; ties are split evenly, as RPC's and GenRM's reference evaluators do.

Invalid answers (class -1) never win unless every candidate in the subset is invalid, and then the credit is 0
(GenRM's authors give them vote weight -1 for the same effect); RPC's authors let them compete as a class (see
`winner_classes`). A class's credit is `tteval.estimators.class_credit`. Class totals are summed in a canonical
order, so a selector's credit does not depend on the order of the candidates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.estimators import weighted_vote_credit
from tteval.selectors.pool import INVALID, IndexLike, Pool, candidate_class_credit, indices

INVALID_RULES = ("never", "compete", "last-resort")


def class_totals(classes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct classes ascending, summed weight per class). Each class's weights are added in sorted order, so
    the totals are bit-identical for any permutation of the candidates (exact ties stay ties)."""
    order = np.lexsort((weights, classes))
    c, w = classes[order], weights[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    return c[starts], np.add.reduceat(w, starts)


def winner_classes(classes: np.ndarray, totals: np.ndarray, invalid: str = "never") -> np.ndarray:
    """The classes with the maximal total, by the rule for the invalid class (-1):

    * "never" (self-consistency, GenRM's weighted vote): the maximum over valid classes; -1 only when no valid
      class is present;
    * "compete" (RPC's authors, `compute_rpc.py`): -1 is a class like any other and wins (earning 0) whenever
      its total is the largest; if every total is 0, every class ties;
    * "last-resort" (tteval 0.1's RPC rule): -1 wins only when it has a positive total and no valid class does;
      if nothing has a positive total, the valid classes tie."""
    if invalid not in INVALID_RULES:
        raise TtevalError(f"unknown invalid-answer rule {invalid!r}; use one of {', '.join(INVALID_RULES)}")
    if invalid == "compete":
        return classes[totals == totals.max()]
    valid = classes != INVALID
    if not valid.any():
        return classes[~valid]
    vt = totals[valid]
    best = vt.max()
    if invalid == "last-resort" and best <= 0 and (~valid).any() and totals[~valid].max() > 0:
        return np.array([INVALID])
    return classes[valid][vt == best]


def credit(pool: Pool, ix: np.ndarray, winners: np.ndarray, by_votes: bool = False) -> float:
    """Expected credit when one of the tied winning classes (all present among `ix`) is picked uniformly, or with
    `by_votes` in proportion to its votes among `ix` (the first-drawn rule of GenRM's weighted vote, in expectation)."""
    cc = candidate_class_credit(pool)
    sub = pool.answers[ix]
    shares = [float(np.count_nonzero(sub == w)) if by_votes else 1.0 for w in winners.tolist()]
    earned = [float(cc[ix[np.argmax(sub == w)]]) for w in winners.tolist()]
    return sum(a * b for a, b in zip(shares, earned)) / sum(shares)


def weighted_vote(pool: Pool, idx: IndexLike, weights: str | Sequence[float] | np.ndarray) -> float:
    """Credit of the answer class with the largest summed weight among candidates `idx`; `weights` are one
    non-negative value per pool candidate (or a reward name in `pool.rewards`). The one weighted vote,
    `tteval.estimators.weighted_vote_credit`: tied classes share the credit in proportion to their votes."""
    w = pool.reward(weights)
    if np.any(w < 0):
        raise TtevalError("vote weights must be non-negative")
    ix = indices(pool, idx)
    return float(weighted_vote_credit(pool.answers, w, pool.correct, ix[None, :])[0])


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
