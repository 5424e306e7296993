"""Metrics time of a `tteval run` pool: RPC's Weibull fits, with and without skipping the fits that cannot change
the winner (`tteval.selectors.rpc._sure_winner`), on the committed example (20 MBPP x 16) and on synthetic pools
shaped like the overhead bench (20 problems x 8, 64 tokens, 2-5 answer classes). Checks both give the same
metrics.json, counts the mixture fits run, and records CPU time (steadier than wall time on a shared machine).
Writes bench/results/metrics.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as tteval.cli sets it, before numpy loads OpenBLAS
import numpy as np  # noqa: E402

HERE = Path(__file__).parent
RESULT = HERE / "results" / "metrics.json"
EXAMPLE = HERE.parent / "results" / "example" / "mbpp_smollm2_sample_n16_e220251f" / "samples.jsonl"


def synthetic(problems: int = 20, n: int = 8, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for p in range(problems):
        classes = int(rng.integers(2, 6))
        for i in range(n):
            a = int(rng.integers(-1, classes))
            out.append({"task_id": f"p{p}", "sample_index": i, "answer_class": a, "correct": a == 0,
                        "num_tokens": 64, "logprob": float(rng.uniform(-0.9, -0.05) * 64), "completion": f"{p}/{i}"})
    return out


def timed(samples: list[dict], shortcut: bool) -> tuple[float, int, str]:
    from tteval.metrics import compute_metrics
    from tteval.selectors import rpc

    rpc._fit_sorted.cache_clear()
    original = rpc._sure_winner
    if not shortcut:
        rpc._sure_winner = lambda *a, **k: None
    try:
        t0 = time.process_time()
        m = compute_metrics(samples, "mbpp" if samples[0]["task_id"].startswith("mbpp/") else "gsm8k", seed=0)
        cpu = time.process_time() - t0
    finally:
        rpc._sure_winner = original
    return cpu, rpc._fit_sorted.cache_info().misses, json.dumps(m, sort_keys=True)


def main() -> None:
    from tteval.records import read_samples

    pools = {"example 20x16": read_samples(EXAMPLE).records}
    pools.update({f"synthetic 20x8 seed {s}": synthetic(seed=s) for s in range(3)})
    rows = []
    timed(pools["example 20x16"], True)  # warm up imports
    for name, samples in pools.items():
        cpu_full, fits_full, m_full = timed(samples, False)
        cpu_fast, fits_fast, m_fast = timed(samples, True)
        row = {"pool": name, "full": {"cpu_s": round(cpu_full, 3), "fits": fits_full},
               "skipping": {"cpu_s": round(cpu_fast, 3), "fits": fits_fast},
               "identical_metrics": m_full == m_fast, "loadavg_1m": round(os.getloadavg()[0], 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({"pools": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
