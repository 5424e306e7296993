"""Monte-Carlo strategy@k for any selector, and the one reward-weighted vote (`weighted_vote_credit`, weighted maj@k)."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.estimators._checks import _CHUNK_CELLS, _check_k, _clip, _vector
from tteval.estimators.majority import _answer_classes


def resampled_at_k(
    select: Callable[[np.ndarray], float | np.ndarray],
    n: int,
    k: int,
    reps: int = 200,
    seed: int = 0,
    batched: bool = False,
) -> tuple[float, float]:
    """Monte-Carlo strategy@k for any selector: (mean, standard error) of its credit over `reps` seeded random
    k-subsets of range(n) drawn without replacement (GenRM's `compute_weighted_sc` protocol, ALGORITHMS.md 2.4).

    `select(indices)` gets one subset (indices in random draw order, so "first drawn" tie rules are random) and
    returns its credit; with `batched=True` it gets all subsets as a (reps, k) array and returns (reps,) credits
    (same subsets for the same seed). k == n has one subset: the value is exact and its standard error 0.
    The standard error is std(ddof=1)/sqrt(reps) (NaN for reps = 1).
    """
    n = int(n)
    k = _check_k(k, n)
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise TtevalError(f"reps must be a positive integer, got {reps!r}")
    if k == n:
        full = np.arange(n)
        v = np.asarray(select(full[None, :]) if batched else select(full), dtype=float).reshape(-1)[0]
        if not np.isfinite(v):
            raise TtevalError("the selector returned a non-finite credit")
        return float(v), 0.0
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n)
    subsets = np.concatenate(
        [np.argsort(rng.random((min(rows, reps - i), n)), axis=1)[:, :k] for i in range(0, reps, rows)]
    )
    if batched:
        vals = np.asarray(select(subsets), dtype=float).reshape(-1)
        if vals.size != reps:
            raise TtevalError(f"a batched selector must return {reps} credits, got {vals.size}")
    else:
        vals = np.array([float(select(s)) for s in subsets])
    if not np.all(np.isfinite(vals)):
        raise TtevalError("the selector returned a non-finite credit")
    se = float(vals.std(ddof=1) / math.sqrt(reps)) if reps > 1 else float("nan")
    return float(_clip(vals.mean(), vals.min(), vals.max())), se


def weighted_vote_credit(
    answers: Sequence[int], weights: Sequence[float], correct: Sequence[float], subsets: np.ndarray
) -> np.ndarray:
    """Credit of a weighted majority vote on each row of `subsets` (r, k): the valid class with the largest sum of
    weights wins (invalid answers never vote; no valid answer earns 0); credit = the winner's `class_credit`.

    Ties (within 1e-12 of the row's total |weight|) are split in proportion to the tied classes' votes in the row:
    the expectation of GenRM's rule (`compute_weighted_sc` keeps the first-drawn of the tied answers, and in a
    random draw order that is each tied class with probability its share of their votes). With equal weights
    tied classes have equal votes, so the split is even, as in `maj_at_k`."""
    cls, counts, util, _ = _answer_classes(answers, correct)
    w = _vector(weights, "weights")
    if w.shape != cls.shape:
        raise TtevalError(f"answers and weights differ in length ({cls.size} vs {w.size})")
    subsets = np.atleast_2d(np.asarray(subsets, dtype=np.int64))
    n_rows, n_cls = subsets.shape[0], max(counts.size, 1)
    c, ws = cls[subsets], w[subsets]
    ok = c >= 0
    flat = (np.arange(n_rows)[:, None] * n_cls + c)[ok]
    totals = np.bincount(flat, weights=ws[ok], minlength=n_rows * n_cls).reshape(n_rows, n_cls)
    votes = np.bincount(flat, minlength=n_rows * n_cls).reshape(n_rows, n_cls)
    totals = np.where(votes > 0, totals, -np.inf)
    best = totals.max(axis=1, keepdims=True)
    tol = 1e-12 * np.abs(np.where(ok, ws, 0.0)).sum(axis=1, keepdims=True)
    share = np.where((votes > 0) & (totals >= best - tol), votes, 0)
    u = util if util.size else np.zeros(1)
    credit = (share * u[None, :]).sum(axis=1) / np.maximum(share.sum(axis=1), 1)
    return _clip(credit, min(0.0, u.min()), max(0.0, u.max()))


def weighted_maj_at_k(
    answers: Sequence[int],
    weights: Sequence[float],
    correct: Sequence[float],
    k: int,
    reps: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """Reward-weighted majority vote at k (weighted self-consistency: each vote counts its reward) by seeded
    resampling: (mean, standard error). GenRM's `compute_weighted_sc` (Singhi et al. 2025) does the same with 25
    subsets and a first-drawn tie rule, whose expectation `weighted_vote_credit` computes. No cheap exact form
    exists (ALGORITHMS.md 5.5);
    with equal weights it estimates `maj_at_k`. Vote rules as in `weighted_vote_credit`."""
    n = len(answers)
    weighted_vote_credit(answers, weights, correct, np.zeros((1, 1), dtype=np.int64))  # validate once, early
    return resampled_at_k(
        lambda s: weighted_vote_credit(answers, weights, correct, s), n, k, reps=reps, seed=seed, batched=True
    )
