"""Sandbox throughput: sandboxed programs per second on this machine, with 1 and 2 workers.

Workloads: (a) a trivial program (`pass`) through `run_many`, the fixed cost of one sandbox (launcher, namespaces,
interpreter start, clean-up); (b) MBPP reference solutions with their tests through `check_programs` (the
per-candidate cost of grading code); with `--full`, also every reference of MBPP, MBPP sanitized and HumanEval,
which is what `tests/test_code_references.py -m slow` runs. Each measurement runs twice, A/B: the launcher forked
from the warm zygote (the default) and one launcher process started per program (TTEVAL_SANDBOX_ZYGOTE=0), with
the load average before and after (the machine may be shared). Writes bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from tteval.graders.code import check_programs, default_limits
from tteval.graders.sandbox import isolation_mode, run_many

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "sandbox.json"
DATA_DIRS = (ROOT / "tasks" / "data", Path("/work/shared/datasets"))


def rows(name: str) -> list[dict]:
    for folder in DATA_DIRS:
        if (folder / name).is_file():
            return [json.loads(line) for line in (folder / name).read_text().splitlines() if line.strip()]
    raise SystemExit(f"{name} not found in {DATA_DIRS}")


def corpus(name: str) -> list[tuple[str, str]]:
    if name == "mbpp":
        return [(r["code"], r["test_setup_code"] + "\n" + "\n".join(r["test_list"])) for r in rows("mbpp.jsonl")]
    if name == "mbpp_sanitized":
        out = []
        for r in rows("mbpp_sanitized.jsonl"):
            imports = "\n".join(r["test_imports"])
            out.append((imports + "\n" + r["code"], imports + "\n" + "\n".join(r["test_list"])))
        return out
    return [(r["prompt"] + r["canonical_solution"], r["test"] + f"\ncheck({r['entry_point']})\n")
            for r in rows("humaneval.jsonl")]


LAUNCHERS = {"zygote": "1", "per run": "0"}  # TTEVAL_SANDBOX_ZYGOTE


def timed(fn, n: int, workers: int, extra, launcher: str = "zygote") -> dict:
    os.environ["TTEVAL_SANDBOX_ZYGOTE"] = LAUNCHERS[launcher]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = fn(workers)
    seconds = time.perf_counter() - t0
    return {"launcher": launcher, "workers": workers, "programs": n, "seconds": round(seconds, 2),
            "programs_per_s": round(n / seconds, 1), **extra(results),
            "load_average_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trivial", type=int, default=200, help="trivial programs per measurement")
    parser.add_argument("--mbpp", type=int, default=200, help="MBPP references per measurement (the first N)")
    parser.add_argument("--full", action="store_true", help="also time every reference of the three corpora")
    args = parser.parse_args()
    limits = default_limits()
    report: dict = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "isolation": isolation_mode(),
        "limits": limits.__dict__,
        "trivial": [],
        "mbpp_references": [],
    }
    trivial = ["pass"] * args.trivial
    for workers in (1, 2):
        for launcher in LAUNCHERS:
            report["trivial"].append(timed(
                lambda w: run_many(trivial, limits, workers=w), len(trivial), workers,
                extra=lambda rs: {"ok": sum(r.status == "ok" for r in rs),
                                  "mean_child_runtime_s": round(sum(r.runtime_s for r in rs) / len(rs), 4)},
                launcher=launcher))
            print("trivial", report["trivial"][-1], flush=True)
    items = corpus("mbpp")[: args.mbpp]
    for workers in (1, 2):
        for launcher in LAUNCHERS:
            report["mbpp_references"].append(timed(
                lambda w: check_programs(items, limits, workers=w), len(items), workers,
                extra=lambda vs: {"passed": sum(v.passed for v in vs),
                                  "mean_child_runtime_s": round(sum(v.runtime_s for v in vs) / len(vs), 4)},
                launcher=launcher))
            print("mbpp", report["mbpp_references"][-1], flush=True)
    os.environ.pop("TTEVAL_SANDBOX_ZYGOTE", None)
    if args.full:
        report["full_corpora"] = {}
        for name in ("mbpp", "mbpp_sanitized", "humaneval"):
            items = corpus(name)
            report["full_corpora"][name] = timed(
                lambda w: check_programs(items, limits, workers=w), len(items), 2,
                extra=lambda vs: {"passed": sum(v.passed for v in vs),
                                  "slowest_s": round(max(v.runtime_s for v in vs), 2)})
            print(name, report["full_corpora"][name], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
