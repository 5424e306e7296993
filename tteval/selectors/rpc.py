"""RPC, Reasoning-pruning Perplexity Consistency (Zhou et al. 2025, arXiv 2502.00511), as the authors' evaluator
(`WNJXYK/RPC`, `compute_rpc.py`) computes it, plus the PPL baseline.

* Path probability p_i = exp(mean token log-probability): length-normalised, not the sequence probability.
* Reasoning Pruning: fit a two-component Weibull mixture to the K values p_i by maximum likelihood (L-BFGS-B from
  (w, k1, lam1, k2, lam2) = (0.5, 1, 1, 1.5, 2), w in [0.2, 0.8], the rest >= 0.01); "high" is the component with
  the larger Weibull mean lam * Gamma(1 + 1/k); prune path i iff P(low | p_i) > P(high | p_i) AND p_i < mean(p).
* Perplexity Consistency: every path joins its answer class (pruned ones too, adding 0); s(A) is the sum of p over
  A's distinct unpruned completions; the largest s(A) wins, ties split 1/#tied; confidence s(A) / sum_B s(B).

Choices where the original is silent or undefined (the original code has no special cases):
* the mixture pdf is clipped into [1e-300, 1e300] inside the log-likelihood (the original does not clip and can hit
  log(0) = -inf; the DingYX0731/RPC reproduction clips at 1e-300), and p_i is floored at 1e-300 for the fit only
  (exp of a mean logprob below -745 underflows to 0, where the pdf diverges for k < 1); p_i = 1.0 needs nothing;
* the fit runs on the sorted p_i and the mean is an exactly rounded sum, so pruning is independent of path order;
* the fit is skipped where it cannot change the choice: under the authors' rule, when one class's score over
  its paths at or above the mean beats every other class's unpruned score (results are those of the full
  computation, tested); fits are cached on the sorted p, so a resampled subset seen before is not refitted;
* K = 1 or all p_i equal: nothing is pruned and no fit is run (no p_i lies below the mean; the original would fit a
  degenerate mixture and could prune on a rounding error in the mean). With K = 2 and distinct p_i the fit does
  prune the lower path, as the original does; that never changes the selected answer, only the confidence;
* de-duplication keys on (completion text, p): identical texts (which have identical p) count once, which is what
  the original's per-class dict of text -> set of p values sums;
* invalid answers (class -1) form a class like any other, as in the original, where "[Invalid]" is an answer
  string: it can win the PC sum, and then the problem earns 0 (answers (inv, inv, A), p = (0.8, 0.9, 0.95), A
  correct: 0.0). tteval 0.1 let it win only when no valid class had a positive score, which pushes rpc@k up;
  that rule stays available as `invalid="last-resort"`.

The Weibull fit differs from the original's in its numerics only (clipped pdf, sorted data, analytic gradient):
on 600 real pools the two fits prune differently in 11, and there tteval's fit mostly reaches the higher
likelihood, so it is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import gamma

from tteval.errors import TtevalError
from tteval.selectors.pool import INVALID, IndexLike, Pool, indices
from tteval.selectors.self_consistency import credit, winner_classes

WEIBULL_INIT = (0.5, 1.0, 1.0, 1.5, 2.0)  # (w, k1, lam1, k2, lam2), the authors' "fixed" initialisation
WEIBULL_BOUNDS = ((0.2, 0.8), (0.01, None), (0.01, None), (0.01, None), (0.01, None))
PDF_FLOOR = 1e-300
PDF_CEIL = 1e300


@dataclass(frozen=True)
class WeibullMixture:
    """A fitted two-component Weibull mixture, relabelled so that component "high" has the larger mean."""

    w_high: float
    k_high: float
    lam_high: float
    k_low: float
    lam_low: float

    def posterior_high(self, x: np.ndarray) -> np.ndarray:
        """P(high | x) = w W_high(x) / (w W_high(x) + (1 - w) W_low(x)); NaN where both densities vanish."""
        x = np.asarray(x, dtype=float)
        with np.errstate(all="ignore"):
            a = self.w_high * weibull_pdf(x, self.k_high, self.lam_high)
            b = (1.0 - self.w_high) * weibull_pdf(x, self.k_low, self.lam_low)
            return a / (a + b)


def weibull_pdf(x: np.ndarray, k: float, lam: float) -> np.ndarray:
    """Weibull density (k / lam) (x / lam)^(k - 1) exp(-(x / lam)^k) (may overflow or underflow; not clipped)."""
    z = np.asarray(x, dtype=float) / lam
    return (k / lam) * z ** (k - 1.0) * np.exp(-(z**k))


def weibull_mean(k: float, lam: float) -> float:
    """Mean of a Weibull(k, lam): lam * Gamma(1 + 1/k)."""
    return float(lam * gamma(1.0 + 1.0 / k))


def mixture_nll(theta: np.ndarray, x: np.ndarray) -> float:
    """Negative log-likelihood of the mixture w W(k1, lam1) + (1 - w) W(k2, lam2) at data x, the pdf clipped into
    [1e-300, 1e300] so the objective stays finite (written out in one expression: it is evaluated ~300 times a fit)."""
    w, k1, lam1, k2, lam2 = theta
    with np.errstate(all="ignore"):
        z1, z2 = x / lam1, x / lam2
        f = (w * k1 / lam1) * z1 ** (k1 - 1.0) * np.exp(-(z1**k1)) + ((1.0 - w) * k2 / lam2) * z2 ** (
            k2 - 1.0
        ) * np.exp(-(z2**k2))
        return -float(np.log(np.minimum(np.fmax(f, PDF_FLOOR), PDF_CEIL)).sum())  # fmax also maps NaN to the floor


def mixture_nll_grad(theta: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """`mixture_nll` and its analytic gradient in (w, k1, lam1, k2, lam2), for L-BFGS-B (`jac=True`): one pass
    instead of a finite-difference gradient's six. Points whose density is clipped contribute no gradient.

    With z = x / lam: d log W / dk = 1/k + log z - z^k log z and d log W / dlam = (k / lam)(z^k - 1)."""
    w, k1, lam1, k2, lam2 = theta
    with np.errstate(all="ignore"):
        z1, z2 = x / lam1, x / lam2
        z1k, z2k = z1**k1, z2**k2
        f1 = (k1 / lam1) * z1 ** (k1 - 1.0) * np.exp(-z1k)
        f2 = (k2 / lam2) * z2 ** (k2 - 1.0) * np.exp(-z2k)
        f = w * f1 + (1.0 - w) * f2
        clipped = np.minimum(np.fmax(f, PDF_FLOOR), PDF_CEIL)
        live = (f == clipped) & np.isfinite(f1) & np.isfinite(f2)  # unclipped, finite: these carry gradient
        a, b = w * f1 / f, (1.0 - w) * f2 / f  # each component's share of the density
        lz1, lz2 = np.log(z1), np.log(z2)
        terms = np.stack([
            (f1 - f2) / f,
            a * (1.0 / k1 + lz1 - z1k * lz1),
            a * (k1 / lam1) * (z1k - 1.0),
            b * (1.0 / k2 + lz2 - z2k * lz2),
            b * (k2 / lam2) * (z2k - 1.0),
        ])  # fmt: skip
        grad = -np.where(live, terms, 0.0).sum(axis=1)
        return -float(np.log(clipped).sum()), np.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def fit_weibull_mixture(p: np.ndarray) -> WeibullMixture:
    """Maximum-likelihood two-component Weibull mixture of the path probabilities `p` (the authors' optimiser,
    start and bounds), relabelled by component mean. Cached on the sorted values: resampled subsets repeat."""
    x = np.clip(np.sort(np.asarray(p, dtype=float)), PDF_FLOOR, 1.0)
    return _fit_sorted(x.tobytes())


@lru_cache(maxsize=8192)
def _fit_sorted(key: bytes) -> WeibullMixture:
    from scipy.optimize import minimize  # here, not at import: a run whose fits are all skipped never loads it

    x = np.frombuffer(key, dtype=float)
    res = minimize(mixture_nll_grad, np.array(WEIBULL_INIT), args=(x,), method="L-BFGS-B", jac=True, bounds=WEIBULL_BOUNDS)
    w, k1, lam1, k2, lam2 = (float(v) for v in res.x)
    if weibull_mean(k1, lam1) < weibull_mean(k2, lam2):
        w, k1, lam1, k2, lam2 = 1.0 - w, k2, lam2, k1, lam1
    return WeibullMixture(w, k1, lam1, k2, lam2)


def prune_rule(p: np.ndarray, posterior_high: np.ndarray) -> np.ndarray:
    """Prune mask: a path goes iff it is more likely in the low component AND its p is below the mean p (both
    conditions; a NaN posterior prunes nothing)."""
    p = np.asarray(p, dtype=float)
    hi = np.asarray(posterior_high, dtype=float)
    with np.errstate(invalid="ignore"):
        return ((1.0 - hi) > hi) & below_mean(p)


def reasoning_pruning(p: np.ndarray) -> np.ndarray:
    """Keep mask (True = kept) of RPC's Reasoning Pruning over path probabilities `p` (K = 1 or all-equal p:
    everything is kept and no fit is run)."""
    p = np.asarray(p, dtype=float)
    if not _needs_fit(p):
        return np.ones(len(p), dtype=bool)
    mix = fit_weibull_mixture(p)
    return ~prune_rule(p, mix.posterior_high(p))


def _needs_fit(p: np.ndarray) -> bool:
    """Whether pruning `p` needs the mixture fit (False for K = 0 or all-equal p); checks that p is valid."""
    if p.ndim != 1:
        raise TtevalError("path probabilities must be a 1-D array")
    if len(p) == 0 or np.all(p == p[0]):
        return False
    if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise TtevalError("path probabilities must lie in [0, 1]")
    return True


def below_mean(p: np.ndarray) -> np.ndarray:
    """The paths pruning may drop: p below the exactly rounded mean (`prune_rule`'s second condition)."""
    mean = math.fsum(p.tolist()) / len(p)
    return p < mean


def path_probabilities(pool: Pool, ix: np.ndarray) -> np.ndarray:
    """p_i = exp(mean_logprob_i) for candidates `ix` (needs the pool's mean log-probabilities)."""
    if pool.mean_logprob is None:
        raise TtevalError("RPC and PPL need each candidate's mean log-probability (pool.mean_logprob)")
    return np.exp(pool.mean_logprob[ix])


def pc_scores(pool: Pool, idx: IndexLike = None, prune: bool = True, dedup: bool = True) -> dict[int, float]:
    """s(A) per answer class among `idx`: the summed p of A's unpruned paths, each distinct completion once if
    `dedup` (RPC) or every path (the DingYX0731/RPC "PC" evaluator). Classes of pruned paths are present with 0."""
    ix = indices(pool, idx)
    if dedup and pool.completions is None:
        raise TtevalError("de-duplicating reasoning paths needs their texts (pool.completions); or pass dedup=False")
    p = path_probabilities(pool, ix)
    keep = reasoning_pruning(p) if prune else np.ones(len(ix), dtype=bool)
    return _class_sums(pool, ix, p, keep, dedup)


def _class_sums(pool: Pool, ix: np.ndarray, p: np.ndarray, keep: np.ndarray, dedup: bool) -> dict[int, float]:
    """s(A) per answer class over the kept paths among `ix` (exactly rounded sums; classes of dropped paths at 0)."""
    members: dict[int, dict[object, float]] = {}
    for j, i in enumerate(ix.tolist()):
        bucket = members.setdefault(int(pool.answers[i]), {})
        if keep[j]:
            key = (pool.completions[i], float(p[j])) if dedup else j  # type: ignore[index]
            bucket[key] = float(p[j])
    return {c: math.fsum(sorted(b.values())) for c, b in sorted(members.items())}


def perplexity_consistency(
    pool: Pool, idx: IndexLike = None, prune: bool = True, dedup: bool = True, invalid: str = "compete"
) -> float:
    """Expected correctness of RPC's answer among candidates `idx` (defaults: RPC = PC over pruned paths with
    de-duplication; prune=False is the paper's "PC" ablation). Ties split evenly. `invalid`: "compete" (the
    authors': the invalid class can win, earning 0) or "last-resort" (tteval 0.1's); see `winner_classes`."""
    ix = indices(pool, idx)
    if prune and invalid == "compete":
        sure = _sure_winner(pool, ix, dedup)
        if sure is not None:  # no pruning can change the choice: skip the mixture fit (RPC's costly part)
            return credit(pool, ix, np.array([sure], dtype=np.int64))
    if prune and len(ix) == 2 and not _pruning_can_change_the_pair(pool, ix, invalid):
        prune = False  # skip the mixture fit (the costly part of RPC@2 over many subsets) where it changes nothing
    scores = pc_scores(pool, ix, prune, dedup)
    classes = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    totals = np.fromiter(scores.values(), dtype=float, count=len(scores))
    return credit(pool, ix, winner_classes(classes, totals, invalid))


def _sure_winner(pool: Pool, ix: np.ndarray, dedup: bool) -> int | None:
    """The class that wins RPC's "compete" vote among `ix` whatever the mixture fit prunes, or None if the fit
    could change the winner. Pruning drops only paths below the mean p, so a class's pruned score lies between
    its score over the paths at or above the mean and its unpruned score (and exactly rounded sums keep that
    order); a class whose lower bound beats every other class's upper bound wins alone either way."""
    p = path_probabilities(pool, ix)
    if not _needs_fit(p):
        return None
    if dedup and pool.completions is None:
        return None  # pc_scores says why
    low = _class_sums(pool, ix, p, ~below_mean(p), dedup)
    high = _class_sums(pool, ix, p, np.ones(len(ix), dtype=bool), dedup)
    best = max(low, key=lambda c: low[c])
    rival = max((v for c, v in high.items() if c != best), default=-math.inf)
    return best if low[best] > rival else None


def _pruning_can_change_the_pair(pool: Pool, ix: np.ndarray, invalid: str = "compete") -> bool:
    """Whether pruning can change RPC's choice between two paths. Only the lower path can be pruned (it must lie
    below the mean), and the higher path's class wins either way, except under the "last-resort" rule when the
    higher path is invalid and the lower one valid: then the kept valid path wins, a pruned one leaves the
    invalid class the only one with a positive score."""
    p = path_probabilities(pool, ix)
    if p[0] == p[1] or invalid != "last-resort":
        return False
    hi, lo = (ix[0], ix[1]) if p[0] > p[1] else (ix[1], ix[0])
    return bool(pool.answers[hi] == INVALID and pool.answers[lo] != INVALID)


def rpc_confidence(pool: Pool, idx: IndexLike = None, prune: bool = True, dedup: bool = True) -> dict[int, float]:
    """Each answer class's confidence s(A) / sum_B s(B) over all classes among `idx` (the -1 class included, as in
    the original), for calibration metrics; all 0.0 when every score is 0."""
    scores = pc_scores(pool, idx, prune, dedup)
    total = math.fsum(scores.values())
    return {c: (s / total if total > 0 else 0.0) for c, s in scores.items()}


def ppl_select(pool: Pool, idx: IndexLike = None) -> float:
    """The PPL baseline: expected correctness of the single path with the highest mean log-probability among
    `idx`, ties split evenly."""
    ix = indices(pool, idx)
    if pool.mean_logprob is None:
        raise TtevalError("PPL needs each candidate's mean log-probability (pool.mean_logprob)")
    m = pool.mean_logprob[ix]
    tied = ix[m == m.max()]
    return float(np.count_nonzero(pool.correct[tied])) / len(tied)

