"""eff@k and ENAMEL's efficiency score (Qiu et al., ICLR 2025): timing summaries, the time limit, the per-sample score."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.estimators._checks import _check_k, _check_ks, _clip, _vector
from tteval.estimators.order import _order_sum


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
