"""Argument checks shared by the estimators: one clear TtevalError for a malformed array, k or ks; estimates clipped into range."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tteval.errors import TtevalError


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
