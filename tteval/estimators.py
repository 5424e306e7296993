"""Unbiased estimators of strategy@k from one pool of n >= k samples per problem, and intervals over problems.

Everything here is a pure function on numpy arrays. Per-problem functions take one problem's arrays and return
that problem's value (or its curve over several k); a task-level number is the mean over problems, and
`summarize` gives it with a boundary-aware interval. Formulas and sources are in each docstring; the notes are
/work/shared/peers/ALGORITHMS.md sections 4 and 5.

Conventions: k > n is an error (no unbiased estimate exists from n < k samples); an expectation "over k-subsets"
means over the C(n, k) subsets of the pool drawn uniformly without replacement; ties are split evenly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
# scipy.special, not scipy.stats (half a second of start-up): ndtri is norm.ppf and betaincinv beta.ppf, bit for bit
from scipy.special import betaincinv, gammaln, ndtri, xlog1py, xlogy

from tteval.errors import TtevalError

# Largest number of float64 cells a temporary array may take before work is split into chunks (32 MiB).
_CHUNK_CELLS = 1 << 22


# --------------------------------------------------------------------------------------------- validation


def _int_array(x: object, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise TtevalError(f"{name} must be integers, got {a.dtype}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise TtevalError(f"{name} must be whole numbers")
        a = a.astype(np.int64)
    return a.astype(np.int64, copy=False)


def _check_k(k: object, n: int) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TtevalError(f"k must be an integer, got {k!r}")
    k = int(k)
    if k < 1:
        raise TtevalError(f"k must be at least 1, got {k}")
    if k > n:
        raise TtevalError(f"k={k} exceeds the number of samples n={n}: no unbiased estimate exists")
    return k


def _check_ks(ks: Sequence[int], n: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ks))
    if arr.size == 0:
        raise TtevalError("ks must name at least one k")
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        return np.array([_check_k(k, n) for k in arr.reshape(-1).tolist()], dtype=np.int64)
    if arr.min() < 1 or arr.max() > n:
        _check_k(int(arr.min()) if arr.min() < 1 else int(arr.max()), n)
    return arr.astype(np.int64)


def _vector(x: object, name: str, allow_inf: bool = False) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise TtevalError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.size == 0:
        raise TtevalError(f"{name} is empty")
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if np.any(bad):
        raise TtevalError(f"{name} holds {'NaN' if allow_inf else 'non-finite'} values")
    return a


def _pair(x: object, y: object, xname: str, yname: str, allow_inf: bool = False) -> tuple[np.ndarray, np.ndarray]:
    a = _vector(x, xname, allow_inf)
    b = _vector(y, yname)
    if a.shape != b.shape:
        raise TtevalError(f"{xname} and {yname} differ in length ({a.size} vs {b.size})")
    return a, b


def _clip(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Estimates clipped into their range: a weighted mean of values in [lo, hi] can leave it by a rounding error
    (maj@k reached 1 + 6.7e-16), and readers (the leaderboard) reject values outside [0, 1]."""
    return np.clip(values, lo, hi)


# ---------------------------------------------------------------------------------------------- pass@k


def pass_at_k(n: np.ndarray | int, c: np.ndarray | int, k: int) -> np.ndarray:
    """Unbiased pass@k per problem: 1 - C(n-c, k) / C(n, k), and 1 when n - c < k.

    Chen et al. 2021, "Evaluating Large Language Models Trained on Code" (openai/human-eval
    `estimate_pass_at_k`). Computed as a product of factors in (0, 1], never with binomials:
    1 - prod_{i=n-c+1}^{n} (1 - k/i)  (c factors), or the equal 1 - prod_{t=0}^{k-1} (1 - c/(n-t)) (k factors),
    whichever is shorter; exact to ~1e-15 for n in the thousands. Vectorised over arrays n and c (broadcast);
    returns an array of their shape. k > n for any problem raises TtevalError.
    """
    n_arr, c_arr = np.broadcast_arrays(_int_array(n, "n"), _int_array(c, "c"))
    if n_arr.size == 0:
        return np.zeros(n_arr.shape)
    if np.any(c_arr < 0) or np.any(c_arr > n_arr):
        raise TtevalError("pass_at_k needs 0 <= c <= n for every problem")
    k = _check_k(k, int(n_arr.min()))
    out = np.ones(n_arr.shape)
    live = (n_arr - c_arr) >= k
    nl, cl = n_arr[live].astype(float), c_arr[live].astype(float)
    terms = np.minimum(cl, k).astype(np.int64)
    if nl.size:
        width = max(int(terms.max()), 1)
        rows = max(1, _CHUNK_CELLS // width)
        res = np.empty(nl.size)
        for lo in range(0, nl.size, rows):
            sl = slice(lo, lo + rows)
            res[sl] = _miss_probability(nl[sl], cl[sl], terms[sl], k, width)
        out[live] = 1.0 - res
    return _clip(out, 0.0, 1.0)


def _miss_probability(n: np.ndarray, c: np.ndarray, terms: np.ndarray, k: int, width: int) -> np.ndarray:
    """C(n-c, k)/C(n, k) as a product of `terms` factors per row (c-factor or k-factor form)."""
    t = np.arange(width, dtype=float)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        by_c = 1.0 - k / (n[:, None] - c[:, None] + 1.0 + t)  # i = n-c+1+t
        by_k = 1.0 - c[:, None] / (n[:, None] - t)
    fac = np.where((c <= k)[:, None], by_c, by_k)
    fac = np.where(t < terms[:, None], fac, 1.0)
    return np.prod(fac, axis=1)


def pass_at_k_curve(n: np.ndarray | int, c: np.ndarray | int, ks: Sequence[int]) -> np.ndarray:
    """pass@k for every k in ks: shape (len(ks), *broadcast shape of n and c), row i for ks[i]."""
    n_arr = _int_array(n, "n")
    n_min = int(n_arr.min()) if n_arr.size else 0
    ks_arr = _check_ks(ks, n_min) if n_arr.size else np.asarray(ks)
    return np.stack([pass_at_k(n, c, int(k)) for k in ks_arr])


# ---------------------------------------------------------------------- order-statistic weights (eff, BoN)


def _order_weights(n: int, ks: np.ndarray) -> np.ndarray:
    """W[i, r-1] = C(r-1, k_i - 1) / C(n, k_i) for ascending ranks r = 1..n: the probability that the sample of
    rank r is the maximum of a uniformly random k-subset. Built by ENAMEL's backward recurrence
    w_n = k/n, w_r = w_{r+1} (1 - (k-1)/r) (a reversed cumulative product; no binomials, no overflow)."""
    kk = ks.astype(float)[:, None]
    s = np.arange(1, n, dtype=float)[None, :]
    g = np.ones((len(ks), n))
    g[:, : n - 1] = np.maximum(1.0 - (kk - 1.0) / s, 0.0)  # factor for r = s; zero once r < k
    return (kk / n) * np.cumprod(g[:, ::-1], axis=1)[:, ::-1]


@lru_cache(maxsize=64)
def _cached_weights(n: int, ks: tuple[int, ...]) -> np.ndarray:
    w = _order_weights(n, np.array(ks, dtype=np.int64))
    w.setflags(write=False)
    return w


def _order_sum(n: int, ks: np.ndarray, ascending: np.ndarray) -> np.ndarray:
    """sum_r W[k, r] v_(r) for values sorted ascending (v: (n,) or (n, m)); chunked over k for large n."""
    if len(ks) * n <= 1 << 16:  # small enough to keep: curves repeat the same (n, ks) for every problem
        return _cached_weights(n, tuple(int(k) for k in ks)) @ ascending
    rows = max(1, _CHUNK_CELLS // n)
    return np.concatenate([_order_weights(n, ks[i : i + rows]) @ ascending for i in range(0, len(ks), rows)])


# ----------------------------------------------------------------------------------------------- eff@k


def eff_at_k(scores: Sequence[float], k: int) -> float:
    """Unbiased eff@k = E[max of k samples' efficiency scores] for one problem (Rao-Blackwellised).

    Qiu et al., ICLR 2025, "How Efficient is LLM-Generated Code? A Rigorous & High-Standard Benchmark"
    (ENAMEL `enam/evaluate.py` `calc_eff_at_k`): sort e ascending, eff@k = sum_{r=k}^{n} C(r-1,k-1)/C(n,k) e_(r),
    the exact mean of max over all C(n, k) subsets, with weights from the stable recurrence w_n = k/n,
    w_r = w_{r+1} (1 - (k-1)/r). 0/1 scores give pass@k; k = 1 the mean, k = n the max. Scores are not clipped
    (ENAMEL's scores can exceed 1).
    """
    return float(eff_at_k_curve(scores, [k])[0])


def eff_at_k_curve(scores: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """eff_at_k for every k in ks, sharing one sort (and the cached weights)."""
    e = np.sort(_vector(scores, "scores"))
    return _clip(_order_sum(e.size, _check_ks(ks, e.size), e), e[0], e[-1])


def eff_at_k_many(scores: Sequence[Sequence[float]], k: int) -> np.ndarray:
    """eff@k per problem for a list of per-problem score vectors (pools may differ in size; k <= every n)."""
    arrays = [np.sort(_vector(s, "scores")) for s in scores]
    out = np.empty(len(arrays))
    by_n: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        by_n.setdefault(a.size, []).append(i)
    for n, idx in by_n.items():
        kk = _check_k(k, n)
        block = np.stack([arrays[i] for i in idx], axis=1)
        out[idx] = _clip(_order_sum(n, np.array([kk]), block)[0], block[0], block[-1])
    return out


def hodges_lehmann(times: Sequence[float]) -> float:
    """Hodges-Lehmann location of repeated timings: median of all Walsh averages (t_a + t_b)/2 with a <= b
    (diagonal included, so R runs give R(R+1)/2 averages). ENAMEL `calc_exec_time` (R = 6 runs per test)."""
    t = _vector(times, "times")
    i, j = np.triu_indices(t.size)
    return float(np.median((t[i] + t[j]) / 2.0))


def level_time(runs_per_test: Sequence[Sequence[float]]) -> float:
    """A level's time t_l = max over its tests of the Hodges-Lehmann time of each test's repeated runs (ENAMEL)."""
    if len(runs_per_test) == 0:
        raise TtevalError("a level needs at least one test's timings")
    return max(hodges_lehmann(runs) for runs in runs_per_test)


def efficiency_time_limit(
    ref_times_per_level: Sequence[float], hardness: Sequence[float] = (0, 3, 3, 4), factor: float = 2.0
) -> float:
    """ENAMEL's one time limit per problem: T = factor x max over timed levels (hardness > 0) of the reference
    level time T*_l (factor alpha = 2, `timeout_factor`). Re-time the reference on the evaluation machine."""
    ref = _vector(ref_times_per_level, "ref_times_per_level")
    h = _vector(hardness, "hardness")
    if ref.shape != h.shape:
        raise TtevalError("ref_times_per_level and hardness must have one entry per level")
    if not factor > 1:
        raise TtevalError(f"the time-limit factor must exceed 1, got {factor!r}")
    if not np.any(h > 0):
        raise TtevalError("no timed level (every hardness is 0)")
    return float(factor * ref[h > 0].max())


def efficiency_score(
    times_per_level: Sequence[float | None],
    ref_times_per_level: Sequence[float | None],
    time_limit: float,
    hardness: Sequence[float] = (0, 3, 3, 4),
    timed_out_level: int | None = None,
    failed: bool = False,
) -> float:
    """ENAMEL's per-sample efficiency score e_i = sum_l h_l e_l / sum_l h_l, e_l = max(0, T - t_l) / (T - T*_l).

    Source: ENAMEL `enam/evaluate.py` (`calc_eff`, `Evaluator.evaluate1`), ALGORITHMS.md section 4.2. Our reading:
    * `times_per_level[l]` is t_l (max over the level's tests of each test's Hodges-Lehmann time, `level_time`);
      `ref_times_per_level[l]` is the reference's T*_l timed the same way; `time_limit` is the problem's one T
      (`efficiency_time_limit`, alpha x the slowest timed reference level), the same for every level.
    * `failed` (wrong output or an exception at any executed test) scores 0.
    * A timeout at level l right-censors: levels l, l+1, ... score 0 and their times are ignored. A timeout at
      level 0 (the untimed correctness level) is a failure (score 0); at a timed level the sample still counts as
      passed for pass@k (the caller's bookkeeping; this function only scores efficiency).
    * Levels with h_l = 0 do not enter the score; their time may be None. Faster than the reference gives
      e_l > 1, which is kept (not clipped above); slower than T gives 0.
    """
    h = _vector(hardness, "hardness")
    if np.any(h < 0) or h.sum() <= 0:
        raise TtevalError("hardness weights must be non-negative with a positive sum")
    if len(times_per_level) != h.size or len(ref_times_per_level) != h.size:
        raise TtevalError(f"need one time and one reference time per level ({h.size} levels)")
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise TtevalError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    stop = h.size if timed_out_level is None else int(timed_out_level)
    if timed_out_level is not None and not 0 <= stop < h.size:
        raise TtevalError(f"timed_out_level must be a level index in 0..{h.size - 1}, got {timed_out_level}")
    if failed or stop == 0:
        return 0.0
    total = 0.0
    for lvl in range(stop):
        if h[lvl] == 0:
            continue
        t, ref = times_per_level[lvl], ref_times_per_level[lvl]
        if t is None or ref is None or not (math.isfinite(t) and math.isfinite(ref)) or t < 0 or ref < 0:
            raise TtevalError(f"level {lvl} needs finite non-negative times (pass timed_out_level={lvl} for a timeout)")
        if time_limit <= ref:
            raise TtevalError(f"time_limit {time_limit} must exceed the reference time {ref} of level {lvl}")
        total += h[lvl] * max(0.0, time_limit - t) / (time_limit - ref)
    return float(total / h.sum())


# ------------------------------------------------------------------------------------------------ BoN@k


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


# ------------------------------------------------------------------------------------------------ maj@k


def class_credit(answers: Sequence[int], correct: Sequence[float]) -> np.ndarray:
    """Per candidate, the credit a selector earns by choosing its answer class: the mean correctness of the class's
    members in the whole pool, and 0 for the invalid class (-1). The one definition every class-picking selector
    uses (majority and weighted votes, RPC, the particle-filter vote; `Pool` reads it from here).

    Why the mean: members of a class agree when the classes come from the same equivalence as grading, and then
    any definition gives their shared verdict. When they do not (math-verify equivalence is not transitive; code
    classes group by outputs on the test inputs, without the expected outputs), the mean is the expected
    correctness of the answer reported for the class when any member may stand for it. "Any member correct"
    would credit an oracle, and "the first member" would depend on sample order. Being a per-class constant of
    the pool, it also lets maj@k be computed exactly over all k-subsets."""
    cls, _, util, _ = _answer_classes(answers, correct)
    return np.where(cls >= 0, util[np.maximum(cls, 0)] if util.size else 0.0, 0.0)


def _answer_classes(answers: object, correct: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(class index per sample or -1, class sizes, class utilities (see `class_credit`), number of invalid samples)."""
    a = np.asarray(answers)
    if a.ndim != 1 or a.size == 0:
        raise TtevalError("answers must be a non-empty 1-D array of answer-class ids")
    a = _int_array(a, "answers")
    y = _vector(correct, "correct")
    if y.shape != a.shape:
        raise TtevalError(f"answers and correct differ in length ({a.size} vs {y.size})")
    valid = a >= 0
    labels, inv = np.unique(a[valid], return_inverse=True)
    cls = np.full(a.size, -1, dtype=np.int64)
    cls[valid] = inv
    counts = np.bincount(inv, minlength=labels.size)
    util = np.bincount(inv, weights=y[valid], minlength=labels.size) / np.maximum(counts, 1)
    return cls, counts, util, int((~valid).sum())


def maj_at_k(answers: Sequence[int], correct: Sequence[float], k: int) -> float:
    """Exact expected accuracy of majority voting over a uniformly random k-subset, ties broken uniformly.

    See `maj_at_k_curve` for the definition, rules and method (ALGORITHMS.md section 5.5).
    """
    return float(maj_at_k_curve(answers, correct, [k])[0])


def maj_at_k_curve(answers: Sequence[int], correct: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """maj@k for every k in ks: the exact mean over all C(n, k) subsets of the majority vote's credit.

    Rules: `answers` are answer-class ids; -1 (any negative id) is an invalid / missing answer, which takes a draw
    but never votes, so it never wins; a subset of only invalid answers earns 0. The winning classes are those
    with the most votes; a tie among t classes earns the mean of their utilities (uniform tie-break). A class's
    utility is the mean of `correct` over its members in the pool (their shared correctness when, as usual, all
    members agree), so several correct classes are fine.

    Method (ours; ALGORITHMS.md section 5.5, multivariate hypergeometric): for a winning class g with exactly j
    votes, every other class must draw <= j, and a draw with t others at exactly j pays 1/(1+t) = int_0^1 y^t dy.
    With class generating functions F_c(x, y) = sum_{i<j} C(m_c, i) x^i + y C(m_c, j) x^j, classes with fewer
    than j members (and the invalid ones) merged into (1+x)^r, the numerator of maj@k is
    [x^k] sum_j int_0^1 sum_g u_g C(m_g, j) x^j prod_{c != g} F_c dy, divided by C(n, k). The y-integral is exact
    by Gauss-Legendre with ceil(C/2) nodes (degree <= C-1 in y); the sum over g is a two-state DP ("winner seen
    or not") over classes; all thresholds j are vectorised and every k up to max(ks) comes out of one pass.
    Coefficients are tilted to binomial probabilities (C(m, i) -> C(m, i) p^i (1-p)^(m-i)) so they stay in [0, 1]
    with no cancellation; p = 1/2 suffices up to n ~ 900 (for larger n the ks are split into bands with their
    own p). Cost per problem ~ sum_c min(m_c, J)^2 * ceil(C/2) * max(ks) flops, J = largest utility class.
    """
    cls, counts, util, n_invalid = _answer_classes(answers, correct)
    n = cls.size
    ks_arr = _check_ks(ks, n)
    out = np.zeros(ks_arr.size)
    if not np.any(util != 0):
        return out
    for p, sel in _bands(n, tuple(ks_arr.tolist())):
        kb = ks_arr[list(sel)]
        kmax = int(kb.max())
        num, total = _maj_numerator(counts, util, n_invalid, n, kmax, p)
        out[list(sel)] = num[kb] / total[kb]
    return _clip(out, min(0.0, float(util.min())), max(0.0, float(util.max())))


def maj_at_k_many(
    answers: Sequence[Sequence[int]], correct: Sequence[Sequence[float]], ks: Sequence[int]
) -> np.ndarray:
    """maj_at_k_curve for each problem: shape (problems, len(ks))."""
    return np.array([maj_at_k_curve(a, y, ks) for a, y in zip(answers, correct, strict=True)])


_LOG_FLOOR = -650.0  # smallest log binomial probability a band may divide by (e^-650 ~ 1e-282, far from underflow)


def _log_binom_pmf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    k = np.asarray(k, dtype=float)
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + xlogy(k, p) + xlog1py(n - k, -p)


@lru_cache(maxsize=256)
def _bands(n: int, ks: tuple[int, ...]) -> tuple[tuple[float, tuple[int, ...]], ...]:
    """Split ks into bands sharing a tilt p such that every k's binomial probability C(n,k) p^k (1-p)^(n-k) is
    >= e^-650; p = 1/2 covers all k up to n ~ 900. Returns ((p, indices into ks), ...)."""
    karr = np.array(ks)
    if np.all(_log_binom_pmf(karr, n, 0.5) >= _LOG_FLOOR):
        return ((0.5, tuple(range(len(ks)))),)
    left = sorted(range(len(ks)), key=lambda i: ks[i])
    bands = []
    while left:
        p = ks[left[0]] / n
        take = [i for i in left if _log_binom_pmf(np.array(ks[i]), n, p) >= _LOG_FLOOR]
        bands.append((p, tuple(take)))
        left = [i for i in left if i not in set(take)]
    return tuple(bands)


def _pmf_rows(n: int, width: int, p: float) -> np.ndarray:
    """T[m, d] = C(m, d) p^d (1-p)^(m-d) for m = 0..n, d < width (Pascal recurrence: convex combinations only)."""
    t = np.zeros((n + 1, width))
    t[0, 0] = 1.0
    for m in range(1, n + 1):
        t[m] = (1.0 - p) * t[m - 1]
        t[m, 1:] += p * t[m - 1, :-1]
    t.setflags(write=False)
    return t


_cached_pmf_rows = lru_cache(maxsize=8)(_pmf_rows)


def _pmf_table(n: int, width: int, p: float) -> np.ndarray:
    """Binomial probabilities Bin(d; m, p) for m = 0..n, d < width (kept, full width, for n <= 512)."""
    return _cached_pmf_rows(n, n + 1, p)[:, :width] if n <= 512 else _pmf_rows(n, width, p)


@lru_cache(maxsize=64)
def _gauss01(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1]: exact for polynomials of degree <= 2q - 1."""
    x, w = np.polynomial.legendre.leggauss(q)
    return (x + 1.0) / 2.0, w / 2.0


_TOEPLITZ_MAX_WIDTH = 128  # above this many coefficients, shift-and-add beats dense (width x width) matrices
_TOEPLITZ_MIN_JOBS = 16  # below this many thresholds, shift-and-add has fewer numpy calls to pay for


@lru_cache(maxsize=4)
def _lags(width: int) -> np.ndarray:
    """L[i, s] = max(s - i, 0): index of the coefficient that input degree i sends to output degree s."""
    d = np.arange(width)
    return np.clip(d[None, :] - d[:, None], 0, None)


@lru_cache(maxsize=4)
def _prefix_masks(width: int) -> np.ndarray:
    """M[j-1, i, s] = 0 <= s - i < j for j = 1..width-1: which Toeplitz entries a kernel truncated below j keeps."""
    d = np.arange(width)
    lag = d[None, :] - d[:, None]
    m = (lag[None] >= 0) & (lag[None] < np.arange(1, width)[:, None, None])
    m.setflags(write=False)
    return m


def _shift_per_job(x: np.ndarray) -> np.ndarray:
    """out[i, :, d] = x[i, :, d - (i+1)] (0 where negative): job i (threshold j = i+1) times x^j, truncated."""
    jobs, rows, width = x.shape
    cols = 2 * width
    pad = np.zeros((jobs, rows, cols))
    pad[:, :, width:] = x
    item = pad.itemsize  # job i reads pad[i, :, width - 1 - i + d]: a skewed strided view instead of a gather
    view = np.lib.stride_tricks.as_strided(
        pad.reshape(-1)[width - 1 :], shape=x.shape, strides=((rows * cols - 1) * item, cols * item, item)
    )
    return view.copy()


def _times_class(x: np.ndarray, pm: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """x[i] * F(x, y) for every job i (threshold j = i+1): F = sum_{d<j} pm[d] x^d + y pm[j] x^j, truncated to
    x's width; `ys` is the y value of each row of x (axis 1)."""
    jobs, _, width = x.shape
    if jobs > _TOEPLITZ_MIN_JOBS and width <= _TOEPLITZ_MAX_WIDTH:  # few large ops: a masked Toeplitz matrix per job
        out = np.matmul(x, _prefix_masks(width)[:jobs] * pm[_lags(width)])
    else:  # shift-and-add, one op per coefficient
        out = pm[0] * x
        for i in range(1, jobs):
            out[i:, :, i:] += pm[i] * x[i:, :, : width - i]
    out += (pm[1 : jobs + 1][:, None, None] * ys[None, :, None]) * _shift_per_job(x)
    return out


def _maj_numerator(
    counts: np.ndarray, util: np.ndarray, n_invalid: int, n: int, kmax: int, p: float
) -> tuple[np.ndarray, np.ndarray]:
    """For k = 0..kmax: (sum over k-subsets of credit x p^k (1-p)^(n-k), C(n, k) p^k (1-p)^(n-k)); their ratio
    is maj@k. See `maj_at_k_curve`.

    State per threshold j (winner's vote count) and Gauss node y: polynomials in x (degree <= kmax) for "no
    winner drawn yet" (dp0) and "winner drawn, utility-weighted" (dp1). Classes are folded in one at a time,
    those that cannot win first, so dp1 only exists for the last few.
    """
    width = kmax + 1
    table = _pmf_table(n, width, p)
    wins = util != 0
    jmax = min(int(counts[wins].max()), kmax)
    nodes, weights = _gauss01(max(1, math.ceil(counts.size / 2)))  # y-degree <= (classes - 1)
    q = nodes.size
    jobs = np.arange(1, jmax + 1)
    # Classes smaller than j cannot reach j votes: with the invalid answers they are one binomial factor.
    sorted_counts = np.sort(counts)
    below = np.concatenate([[0], np.cumsum(sorted_counts)])[np.searchsorted(sorted_counts, jobs, side="left")]
    dp0 = np.repeat(table[n_invalid + below][:, None, :], q, axis=1)  # (J, Q, width)
    dp1: np.ndarray | None = None
    # Singletons that cannot win act only at j = 1, where together they give sum_t Bin(t; r, p) y^t x^t.
    lone = (counts == 1) & ~wins
    r = int(lone.sum())
    if r > 1:
        kern = table[r][None, :] * nodes[:, None] ** np.minimum(np.arange(width), r)[None, :]
        dp0[0] = _rows_times(dp0[0], kern)
    else:
        lone[:] = False
    order = list(np.flatnonzero(~wins & ~lone)) + list(np.flatnonzero(wins))
    both_nodes = np.tile(nodes, 2)
    for pos, c in enumerate(order):
        m = int(counts[c])
        jc = min(m, jmax)  # for j > m this class is inside `below`
        pm = table[m]
        if wins[c]:
            gain = (util[c] * pm[1 : jc + 1])[:, None, None] * _shift_per_job(dp0[:jc])
        last = pos == len(order) - 1
        if dp1 is None:
            if not last:
                dp0[:jc] = _times_class(dp0[:jc], pm, nodes)
        elif last:  # dp0 is not needed any more
            dp1[:jc] = _times_class(dp1[:jc], pm, nodes)
        else:
            both = _times_class(np.concatenate([dp0[:jc], dp1[:jc]], axis=1), pm, both_nodes)
            dp0[:jc], dp1[:jc] = both[:, :q], both[:, q:]
        if wins[c]:
            if dp1 is None:
                dp1 = np.zeros_like(dp0)
            dp1[:jc] += gain
    if dp1 is None:  # unreachable: callers come here only with a class of non-zero utility
        return np.zeros(width), table[n]
    return np.einsum("jqd,q->d", dp1, weights), table[n]


def _rows_times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise polynomial product of a and b (both (rows, width)), truncated to width."""
    rows, width = a.shape
    if rows * width * width <= _CHUNK_CELLS:
        lag = np.arange(width)[:, None] - np.arange(width)[None, :]
        toeplitz = np.where(lag >= 0, b[:, np.clip(lag, 0, None)], 0.0)  # (rows, width, width)
        return np.einsum("rsi,ri->rs", toeplitz, a)
    return np.stack([np.convolve(a[i], b[i])[:width] for i in range(rows)])


# -------------------------------------------------------------------------------- resampling (any selector)


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


# --------------------------------------------------------------------------------------------- PassUntil


def pass_until(successes_needed: int, trials: int) -> float:
    """Unbiased pass rate from sampling one instance until r successes, which took K trials: (r-1)/(K-1).

    Haldane's unbiased estimator for the negative binomial (standard result, checked by exact expectation in our
    tests; PassUntil idea from Hu et al. 2024, "Predicting Emergent Abilities with Infinite Resolution
    Evaluation", whose exact estimator we could not verify). Why not 1/K after the first success (r = 1)? K is
    geometric, and E[1/K] = sum_K p (1-p)^(K-1) / K = -p ln p / (1-p) > p: Jensen's inequality for the convex
    1/K, e.g. p = 0.01 gives 0.0465, a 4.7x overestimate. With r = 1 the only unbiased estimator is 1[K = 1]
    (returned here, unbiased but nearly useless), so use r >= 2. The MLE r/K is also biased upward.
    """
    r, t = int(successes_needed), int(trials)
    if r < 1:
        raise TtevalError(f"PassUntil needs at least 1 success to stop at, got {successes_needed}")
    if t < r:
        raise TtevalError(f"PassUntil: {trials} trials cannot contain {successes_needed} successes")
    if r == 1:
        return 1.0 if t == 1 else 0.0
    return (r - 1) / (t - 1)


@dataclass(frozen=True)
class PassUntilResult:
    """One instance's PassUntil outcome. When the cap came first (fewer than r successes) the estimate is
    `value=None`, `censored=True` and `upper_bound` is a one-sided Clopper-Pearson (1 - alpha) upper bound on p
    (~3/K with no success: the rule of three); censored instances must be reported, never imputed."""

    successes_needed: int
    successes: int
    trials: int
    value: float | None
    censored: bool
    upper_bound: float | None = None


def pass_until_result(successes: int, trials: int, successes_needed: int = 2, alpha: float = 0.05) -> PassUntilResult:
    """PassUntil result of an instance sampled until `successes_needed` successes or a cap of `trials` trials."""
    s, t, r = int(successes), int(trials), int(successes_needed)
    if not 0 < alpha < 1:
        raise TtevalError(f"alpha must be in (0, 1), got {alpha}")
    if t < 1 or s < 0 or s > t:
        raise TtevalError(f"PassUntil: {successes} successes in {trials} trials is impossible")
    if s > r:
        raise TtevalError(f"PassUntil stops at the {r}th success; {successes} successes were recorded")
    if s == r:
        return PassUntilResult(r, s, t, pass_until(r, t), False, None)
    upper = 1.0 if s == t else float(betaincinv(s + 1, t - s, 1 - alpha))
    return PassUntilResult(r, s, t, None, True, upper)


def pass_until_from_outcomes(
    outcomes: Sequence[bool], successes_needed: int = 2, alpha: float = 0.05
) -> PassUntilResult:
    """PassUntil from an ordered sequence of i.i.d. trial outcomes (e.g. a pool in sample order): stop at the r-th
    success; if the sequence ends first it is the cap, and the result is censored."""
    o = np.asarray(outcomes, dtype=bool)
    if o.ndim != 1 or o.size == 0:
        raise TtevalError("outcomes must be a non-empty 1-D sequence")
    hits = np.flatnonzero(o)
    r = int(successes_needed)
    if r < 1:
        raise TtevalError(f"PassUntil needs at least 1 success to stop at, got {successes_needed}")
    if hits.size >= r:
        return pass_until_result(r, int(hits[r - 1]) + 1, r, alpha)
    return pass_until_result(int(hits.size), int(o.size), r, alpha)


# -------------------------------------------------------------------------------------------- intervals


def wilson_interval(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for a proportion successes/n: (p + z^2/2n -+ z sqrt(p(1-p)/n +
    z^2/4n^2)) / (1 + z^2/n). Never a point: at 0/n it is [0, z^2/(n+z^2)], at n/n [n/(n+z^2), 1]."""
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise TtevalError(f"wilson_interval needs n >= 1 trials, got {n!r}")
    if not 0 < alpha < 1:
        raise TtevalError(f"alpha must be in (0, 1), got {alpha}")
    if not (math.isfinite(successes) and -1e-9 <= successes <= n + 1e-9):
        raise TtevalError(f"successes must lie in [0, n={n}], got {successes!r}")
    z = float(ndtri(1 - alpha / 2))
    phat = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if phat == 0 else max(0.0, centre - half)
    hi = 1.0 if phat == 1 else min(1.0, centre + half)
    return lo, hi


def _interval(values: Sequence[float], reps: int, alpha: float, seed: int) -> tuple[float, float, float, str]:
    v = _vector(values, "per-problem values")
    if not isinstance(reps, (int, np.integer)) or reps < 1:
        raise TtevalError(f"reps must be a positive integer, got {reps!r}")
    if not 0 < alpha < 1:
        raise TtevalError(f"alpha must be in (0, 1), got {alpha}")
    n, mean = v.size, float(_clip(v.mean(), v.min(), v.max()))
    if np.all((v == 0) | (v == 1)):
        lo, hi = wilson_interval(float(v.sum()), n, alpha)
        return mean, lo, hi, "wilson"
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n)
    means = np.concatenate(
        [v[rng.integers(0, n, size=(min(rows, reps - i), n))].mean(axis=1) for i in range(0, reps, rows)]
    )
    lo, hi = (float(x) for x in np.quantile(means, [alpha / 2, 1 - alpha / 2]))
    bounded = bool(np.all((v >= 0) & (v <= 1)))
    if bounded and (lo <= 0.0 or hi >= 1.0 or hi - lo <= 1e-12):
        lo, hi = wilson_interval(mean * n, n, alpha)
        return mean, lo, hi, "wilson-mean"
    return mean, min(lo, mean), max(hi, mean), "bootstrap"


def bootstrap_ci(
    values: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lower, upper) of the mean over problems, (1 - alpha) two-sided, boundary-aware.

    * 0/1 per-problem values (e.g. pass@1 from one sample): the Wilson score interval (successes, n problems),
      which never collapses to a point at 0% or 100% (LME #4070: a stderr of exactly 0 at 0%).
    * Other values: percentile bootstrap over problems, seeded, one (reps x problems) index draw (split in
      chunks only above 4M cells). If the values lie in [0, 1] and the bootstrap interval reaches 0 or 1 or has
      zero width (the sample shows no spread near a boundary), it falls back to Wilson on the mean with
      n = number of problems, the widest interval any [0, 1] variable with that mean can need.
    * Values outside [0, 1] (e.g. eff@k above 1) keep the bootstrap interval, which is a point if all are equal.
    """
    mean, lo, hi, _ = _interval(values, reps, alpha, seed)
    return mean, lo, hi


def summarize(
    values: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0
) -> dict[str, float | int | str]:
    """{value, lower, upper, n, interval} of a task-level mean over per-problem values, as written to metrics.json
    (`interval` names the method: "wilson", "wilson-mean" or "bootstrap"; see `bootstrap_ci`)."""
    mean, lo, hi, method = _interval(values, reps, alpha, seed)
    return {"value": mean, "lower": lo, "upper": hi, "n": int(np.asarray(values).size), "interval": method}
