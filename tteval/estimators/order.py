"""Order-statistic weights: the probability that the sample of rank r is the best of a random k-subset (eff@k, best-of-k)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tteval.estimators._checks import _CHUNK_CELLS


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
