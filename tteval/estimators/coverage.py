"""pass@k: the unbiased coverage estimator of Chen et al. 2021 (openai/human-eval), per problem and as a curve over k."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.estimators._checks import _CHUNK_CELLS, _check_k, _check_ks, _clip, _int_array


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
