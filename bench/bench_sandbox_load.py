"""Verdicts under load: every MBPP and HumanEval reference graded quiet, then beside two CPU hogs.

The sandbox's deciding limit is CPU time (of the whole process tree), which load does not stretch; wall time is a
backstop (3 x the CPU limit + 5 s) whose runs are run once more. This bench grades all 974 MBPP and 164 HumanEval
references with the default limits (10 CPU s) and 2 workers, first as the machine is, then with two
`python -c 'while True: pass'` processes beside it, and reports per phase: verdicts, timeouts, backstop reruns,
per-program CPU and wall seconds, and how many references would have failed the former 10 s wall-time limit.
Then it calibrates the slowest references' limits (CPU time measured alone, 3 repeats) under the hogs.
Writes bench/results/sandbox_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_sandbox import corpus  # noqa: E402
from machine import cpu_name  # noqa: E402

from tteval.graders.code import calibrate_time_limit, check_programs, default_limits, reference_times  # noqa: E402
from tteval.graders.sandbox import isolation_mode  # noqa: E402

OUT = Path(__file__).parent / "results" / "sandbox_load.json"
OLD_WALL_LIMIT_S = 10.0  # the wall-time limit every reference ran under before CPU time decided


def start_hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def phase(items: list[tuple[str, str]], names: list[str]) -> tuple[dict, list]:
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    verdicts = check_programs(items, default_limits(), workers=2)
    seconds = time.perf_counter() - t0
    cpu = [v.cpu_s for v in verdicts]
    wall = [v.runtime_s for v in verdicts]
    slowest = sorted(range(len(items)), key=lambda i: -cpu[i])[:5]
    return {
        "programs": len(items),
        "seconds": round(seconds, 1),
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "statuses": dict(Counter(v.status for v in verdicts)),
        "timeouts": sum(v.status == "timeout" for v in verdicts),
        "limit_fired": dict(Counter(v.limit_fired or "none" for v in verdicts)),
        "backstop_reruns": sum(v.reruns for v in verdicts),
        "cpu_s_per_program": {"median": round(statistics.median(cpu), 4), "mean": round(statistics.fmean(cpu), 4),
                              "max": round(max(cpu), 3), "total": round(sum(cpu), 1)},
        "wall_s_per_program": {"median": round(statistics.median(wall), 4), "max": round(max(wall), 3)},
        "over_the_old_10s_wall_limit": sum(w > OLD_WALL_LIMIT_S for w in wall),
        "slowest": [{"task": names[i], "cpu_s": round(cpu[i], 3), "wall_s": round(wall[i], 3)} for i in slowest],
    }, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside the loaded phase")
    args = parser.parse_args()
    items, names = [], []
    for name in ("mbpp", "humaneval"):
        pairs = corpus(name)
        items += pairs
        names += [f"{name}/{i + 1 if name == 'mbpp' else i}" for i in range(len(pairs))]  # MBPP ids start at 1
    report: dict = {
        "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "a shared 2-core machine: 'quiet' is without the hogs, other work may run"},
        "isolation": isolation_mode(),
        "limits": {"cpu_s": default_limits().cpu_limit_s, "wall_backstop_s": default_limits().wall_limit_s},
        "hogs": args.hogs,
    }
    report["quiet"], quiet = phase(items, names)
    print("quiet", json.dumps(report["quiet"]), flush=True)
    hogs = start_hogs(args.hogs)
    try:
        report["loaded"], loaded = phase(items, names)
        print("loaded", json.dumps(report["loaded"]), flush=True)
        ratios = [b.cpu_s / a.cpu_s for a, b in zip(quiet, loaded) if a.cpu_s > 0.2 and b.cpu_s > 0]
        report["cpu_loaded_over_quiet_for_programs_above_0.2s"] = {
            "programs": len(ratios), "median": round(statistics.median(ratios), 3), "max": round(max(ratios), 3)}
        slow = sorted(range(len(items)), key=lambda i: -quiet[i].cpu_s)[:3]
        t0 = time.perf_counter()
        times = reference_times([items[i] for i in slow], default_limits(), repeats=3, workers=1)
        report["calibrated_under_load"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "tasks": [{"task": names[i], "reference_cpu_s": round(t[0], 3), "reference_wall_s": round(t[1], 3),
                       "cpu_limit_s": round(calibrate_time_limit(t[0]), 2)} if t else {"task": names[i], "failed": True}
                      for i, t in zip(slow, times)],
        }
        print("calibrated", json.dumps(report["calibrated_under_load"]), flush=True)
    finally:
        stop(hogs)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
