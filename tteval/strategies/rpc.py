"""RPC: Perplexity Consistency + Reasoning Pruning (Zhou et al. 2025, arXiv 2502.00511), following the authors' code.

A path's probability is p_i = exp(mean token logprob) (length-normalised, not the sequence probability).
Reasoning Pruning fits a two-component Weibull mixture to the p_i by maximum likelihood (L-BFGS-B from
(w, k1, l1, k2, l2) = (0.5, 1, 1, 1.5, 2), w in [0.2, 0.8], the rest >= 0.01), calls "high" the component with the
larger Weibull mean l*Gamma(1 + 1/k), and prunes a path iff it is more likely low than high AND below the mean p.
Perplexity Consistency scores an answer class by the summed p of its distinct (unpruned) completion texts; ties
are split. Deviation: pdf values are clipped at 1e-300 inside the log (the original has no clipping; the fork
clips), so p_i = 1.0 or tiny p_i cannot produce -inf.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import gamma

from tteval.strategies.pool import Pool, class_credit

_INIT = np.array([0.5, 1.0, 1.0, 1.5, 2.0])
_BOUNDS = [(0.2, 0.8), (0.01, None), (0.01, None), (0.01, None), (0.01, None)]


def _weibull_pdf(x: np.ndarray, k: float, lam: float) -> np.ndarray:
    z = x / lam
    return (k / lam) * z ** (k - 1) * np.exp(-(z**k))


def _nll(theta: np.ndarray, x: np.ndarray) -> float:
    w, k1, l1, k2, l2 = theta
    with np.errstate(all="ignore"):
        f = w * _weibull_pdf(x, k1, l1) + (1 - w) * _weibull_pdf(x, k2, l2)
    f = np.nan_to_num(f, nan=1e-300, posinf=1e300)
    return float(-np.sum(np.log(np.clip(f, 1e-300, None))))


def reasoning_pruning(p: np.ndarray) -> np.ndarray:
    """Keep mask over paths with probabilities `p` (True = kept)."""
    p = np.asarray(p, dtype=float)
    keep = np.ones(len(p), dtype=bool)
    if len(p) < 2 or np.allclose(p, p[0]):
        return keep  # nothing lies below the mean
    fit = minimize(_nll, _INIT, args=(p,), method="L-BFGS-B", bounds=_BOUNDS)
    w, k1, l1, k2, l2 = fit.x
    if l1 * gamma(1 + 1 / k1) < l2 * gamma(1 + 1 / k2):  # relabel so component 1 is the high one
        w, k1, l1, k2, l2 = 1 - w, k2, l2, k1, l1
    with np.errstate(all="ignore"):
        high = w * _weibull_pdf(p, k1, l1)
        low = (1 - w) * _weibull_pdf(p, k2, l2)
    return ~prune_rule(p, np.nan_to_num(low), np.nan_to_num(high))


def prune_rule(p: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Prune iff the low component explains the path better AND it lies below the mean probability (both needed)."""
    return (low > high) & (p < p.mean())


def cluster_scores(pool: Pool, idx: np.ndarray, prune: bool = True, dedup: bool = True) -> dict[int, float]:
    """s(A) = sum of p over distinct unpruned completions of each answer class among `idx` (pruned paths still
    make their class exist, with score 0)."""
    idx = np.asarray(idx)
    p = np.exp(pool.mean_logprob[idx])
    keep = reasoning_pruning(p) if prune else np.ones(len(idx), dtype=bool)
    scores: dict[int, float] = {}
    seen: dict[int, set] = {}
    for j, i in enumerate(idx):
        a = int(pool.answers[i])
        if a < 0:
            continue
        scores.setdefault(a, 0.0)
        if not keep[j]:
            continue
        text = pool.completions[i] if (dedup and pool.completions is not None) else i
        if text in seen.setdefault(a, set()):
            continue
        seen[a].add(text)
        scores[a] += float(p[j])
    return scores


def perplexity_consistency(pool: Pool, idx: np.ndarray, prune: bool = True, dedup: bool = True) -> float:
    """Expected correctness of RPC's answer (PC over RP-pruned paths); ties split evenly."""
    scores = cluster_scores(pool, idx, prune, dedup)
    if not scores or max(scores.values()) <= 0:
        return 0.0
    best = max(scores.values())
    return class_credit(pool, [a for a, s in scores.items() if s == best])


def rpc_confidence(pool: Pool, idx: np.ndarray, prune: bool = True, dedup: bool = True) -> dict[int, float]:
    """Each answer class's normalised confidence s(A) / sum_B s(B), for calibration metrics."""
    scores = cluster_scores(pool, idx, prune, dedup)
    total = sum(scores.values())
    return {a: (s / total if total > 0 else 0.0) for a, s in scores.items()}


def ppl_select(pool: Pool, idx: np.ndarray) -> float:
    """The PPL baseline: the single path with the highest mean logprob; ties split evenly."""
    idx = np.asarray(idx)
    m = pool.mean_logprob[idx]
    tied = idx[m == m.max()]
    return float(pool.correct[tied].mean())
