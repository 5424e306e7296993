"""Estimator speed: whole curves k = 1..64 over 500 problems x 64 samples for pass@k, best-of-k and maj@k.

Target: all three curves in under 1 s together. Pools are random with a fixed seed: each problem votes among 2-6
answer classes (Dirichlet(1) shares, 10 % invalid answers), one class is correct, rewards are uniform plus a bonus
for correct samples, rounded to 2 decimals (so ties occur). A second pool is the maj@k worst case we know of:
one frequent answer (20 votes) and 44 votes spread over 40 wrong ones (~28 distinct answers per problem).
Also timed: the eff@k curve and reward-weighted majority by resampling (Monte Carlo, 200 subsets) at the powers
of two. Each timing is the best of REPEATS runs, wall clock (the machine may be shared; CPU seconds are recorded
too). Writes bench/results/estimators.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tteval import estimators as est  # noqa: E402

PROBLEMS, SAMPLES, SEED, REPEATS, TARGET_S = 500, 64, 0, 5, 1.0
KS = list(range(1, SAMPLES + 1))
OUT = ROOT / "bench" / "results" / "estimators.json"


def make_pool(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(answers, correct, rewards) per problem: a few answer classes, 10 % invalid, one correct class."""
    pool = []
    for _ in range(PROBLEMS):
        classes = int(rng.integers(2, 7))
        answers = rng.choice(classes, size=SAMPLES, p=rng.dirichlet(np.ones(classes)))
        answers[rng.random(SAMPLES) < 0.1] = -1
        correct = (answers == rng.integers(0, classes)).astype(float)
        rewards = np.round(rng.random(SAMPLES) + 0.3 * correct, 2)
        pool.append((answers, correct, rewards))
    return pool


def make_spread_pool(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Many distinct answers: 20 votes for the correct class, the rest spread over 40 wrong ones."""
    pool = []
    for _ in range(PROBLEMS):
        answers = rng.integers(1, 41, size=SAMPLES)
        answers[:20] = 0
        pool.append((answers, (answers == 0).astype(float)))
    return pool


def timed(fn: Callable[[], object]) -> dict[str, float]:
    walls, cpus = [], []
    for _ in range(REPEATS):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {
        "best_s": round(min(walls), 4),
        "median_s": round(float(np.median(walls)), 4),
        "cpu_best_s": round(min(cpus), 4),
    }


def main() -> None:
    rng = np.random.default_rng(SEED)
    pool = make_pool(rng)
    spread = make_spread_pool(rng)
    n = np.full(PROBLEMS, SAMPLES)
    c = np.array([int(y.sum()) for _, y, _ in pool])
    powers = [1, 2, 4, 8, 16, 32, 64]
    cases = {
        "pass_at_k_curve": lambda: est.pass_at_k_curve(n, c, KS),
        "best_of_k_curve": lambda: [est.best_of_k_curve(r, y, KS) for _, y, r in pool],
        "maj_at_k_curve": lambda: [est.maj_at_k_curve(a, y, KS) for a, y, _ in pool],
        "maj_at_k_curve (many answers: ~28 distinct)": lambda: [est.maj_at_k_curve(a, y, KS) for a, y in spread],
        "eff_at_k_curve (rewards as scores)": lambda: [est.eff_at_k_curve(r, KS) for _, _, r in pool],
        "weighted_maj_at_k (MC, 200 reps, k = 1..64 by powers of 2)": lambda: [
            est.weighted_maj_at_k(a, r, y, k, reps=200, seed=0) for a, y, r in pool for k in powers
        ],
    }
    load_before = os.getloadavg()
    timings = {name: timed(fn) for name, fn in cases.items()}
    headline = sum(timings[name]["best_s"] for name in ("pass_at_k_curve", "best_of_k_curve", "maj_at_k_curve"))
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "numpy": version("numpy"),
        "scipy": version("scipy"),
        "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    setup = {
        "problems": PROBLEMS,
        "samples": SAMPLES,
        "ks": "1..64",
        "seed": SEED,
        "repeats": REPEATS,
        "answer_classes": "2-6 per problem (+10 % invalid)",
        "mean_distinct_answers": round(float(np.mean([len(set(a[a >= 0].tolist())) for a, _, _ in pool])), 2),
        "mean_distinct_answers_spread_pool": round(float(np.mean([len(set(a.tolist())) for a, _ in spread])), 2),
    }
    results = {
        "machine": machine,
        "setup": setup,
        "timings": timings,
        "headline": {"pass_bon_maj_curves_total_s": round(headline, 4), "target_total_s": TARGET_S,
                     "met": bool(headline < TARGET_S)},  # fmt: skip
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(name) for name in timings)
    print(f"{'estimator':<{width}}  {'best s':>8}  {'median s':>8}  {'cpu s':>8}")
    for name, t in timings.items():
        print(f"{name:<{width}}  {t['best_s']:>8.4f}  {t['median_s']:>8.4f}  {t['cpu_best_s']:>8.4f}")
    print(f"pass@k + best-of-k + maj@k curves: {headline:.3f} s (target < {TARGET_S} s) -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
