"""maj@k: the exact expectation of majority voting over all k-subsets, and `class_credit`, the one class-credit rule."""

from __future__ import annotations

import math
from functools import lru_cache
from collections.abc import Hashable
from typing import Sequence

import numpy as np
# scipy.special, not scipy.stats (half a second of start-up): ndtri is norm.ppf and betaincinv beta.ppf, bit for bit
from scipy.special import gammaln, xlog1py, xlogy

from tteval.errors import TtevalError
from tteval.estimators._checks import _CHUNK_CELLS, _check_ks, _clip, _int_array, _vector


def answer_classes(answers: Sequence[Hashable | None]) -> np.ndarray:
    """Class ids for answers compared by equality: 0, 1, ... in order of first appearance; -1 for None or ""."""
    ids: dict[Hashable, int] = {}
    out = np.empty(len(answers), dtype=np.int64)
    for i, a in enumerate(answers):
        if a is None or (isinstance(a, str) and not a.strip()):
            out[i] = -1
            continue
        try:
            out[i] = ids.setdefault(a, len(ids))
        except TypeError:
            raise TtevalError(f"answer {i} ({type(a).__name__}) is not hashable; give strings or numbers") from None
    return out


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
