"""Estimator speed: whole curves k = 1..64 for 500 problems x 64 samples (pass@k, best_of_k, maj_at_k)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tteval import estimators as est

P, N = 500, 64
OUT = Path(__file__).parent / "results" / "estimators.json"


def main() -> None:
    rng = np.random.default_rng(0)
    ks = list(range(1, N + 1))
    answers = rng.integers(0, 5, size=(P, N))
    correct = answers == 0
    rewards = rng.random((P, N))
    timings = {}
    t = time.perf_counter()
    est.pass_at_k_curve(np.full(P, N), correct.sum(1), ks)
    timings["pass_at_k_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for r, y in zip(rewards, correct):
        est.best_of_k_curve(r, y, ks)
    timings["best_of_k_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for a, y in zip(answers, correct):
        est.maj_at_k_curve(a, y, ks)
    timings["maj_at_k_s"] = time.perf_counter() - t
    timings = {k: round(v, 3) for k, v in timings.items()}
    timings["total_s"] = round(sum(timings.values()), 3)
    result = {"setup": {"problems": P, "samples": N, "ks": "1..64", "answer_classes": 5}, "timings": timings,
              "target_total_s": 1.0}  # fmt: skip
    print(json.dumps(result, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
