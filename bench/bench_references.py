"""Every reference of MBPP, MBPP sanitized and HumanEval against its own tests, and every shifted reference (task
i's tests, task i+1's solution), through `check_programs` in oracle mode with 2 workers: the verdicts #14 pins
(references pass, shifted ones fail, no task falls back to in-process mode) and the programs per second.
Writes bench/results/references_oracle.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench_sandbox import corpus

from tteval.graders.code import check_programs, default_limits

OUT = Path(__file__).parent / "results" / "references_oracle.json"


def measure(name: str) -> dict:
    pairs = corpus(name)
    n = len(pairs)
    shifted = [(pairs[(i + 1) % n][0], tests) for i, (_, tests) in enumerate(pairs)]
    start = time.perf_counter()
    verdicts = check_programs(pairs + shifted, default_limits(), workers=2)
    seconds = time.perf_counter() - start
    own, other = verdicts[:n], verdicts[n:]
    return {
        "references": n,
        "references_failed": sum(not v.passed for v in own),
        "shifted_references_passed": sum(v.passed for v in other),
        "programs": 2 * n,
        "seconds_2_workers": round(seconds, 1),
        "programs_per_s": round(2 * n / seconds, 2),
    }


def main() -> None:
    result: dict = {"note": "every reference (own tests) and every shifted reference (task i's tests, task i+1's "
                            "solution) through check_programs, 2 workers, oracle mode",
                    "load_average_1m_before": round(os.getloadavg()[0], 2)}
    for name in ("humaneval", "mbpp", "mbpp_sanitized"):
        result[name] = measure(name)
        print(name, result[name], flush=True)
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
