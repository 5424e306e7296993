"""ENAMEL reproduction: score ENAMEL's released samples with `tteval score --task enamel` and compare with the
published leaderboard row (HumanEval+ canonical solutions: eff@1 0.517, pass@1 0.958; targets +-0.03 / +-0.01).

The samples are ENAMEL's own files (data/enamel/, Apache-2.0). The whole 142-problem set takes about 3 minutes
on 2 cores (timing is single-threaded, as ENAMEL advises: run it on a quiet machine; load distorts the
timings and lowers eff@1). Writes a run folder (default results/enamel-<samples>/) and bench/results/enamel.json
(other samples: enamel-<samples>.json; with --limit or --problems: *_subset.json).

    python bench/bench_enamel.py                                   # the full reproduction
    python bench/bench_enamel.py --limit 15                        # a quick check on the first 15 problems
    python bench/bench_enamel.py --samples enamel-references       # the expert references against themselves
    python bench/bench_enamel.py --clock cpu                       # CPU time instead of wall time (not ENAMEL's)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import cpu_name  # noqa: E402

from tteval.score_file import score_file  # noqa: E402
from tteval.graders.efficiency import PROBLEMSET, Protocol  # noqa: E402

# ENAMEL README leaderboard (greedy / canonical rows), eff@1 and pass@1, with the tolerance the issue sets.
PUBLISHED = {"humanevalplus-canonical": {"eff@1": 0.517, "pass@1": 0.958}}
TOLERANCE = {"eff@1": 0.03, "pass@1": 0.01}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", default="humanevalplus-canonical",
                        help="a sample file of data/enamel/ (without .json), or a path to ENAMEL-format JSON")
    parser.add_argument("--limit", type=int, default=None, help="only the first N of ENAMEL's 142 problems")
    parser.add_argument("--problems", default=None, help="only these HumanEval indices (comma separated)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: ENAMEL's (default); cpu: process CPU time, robust to other jobs (not ENAMEL's)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default results/enamel-<samples>)")
    args = parser.parse_args()

    path = Path(args.samples) if args.samples.endswith(".json") else ROOT / "data" / "enamel" / f"{args.samples}.json"
    name = path.stem
    os.environ["TTEVAL_ENAMEL_CLOCK"] = args.clock
    subset = list(PROBLEMSET)
    if args.problems:
        subset = [int(x) for x in args.problems.split(",")]
    if args.limit:
        subset = subset[: args.limit]
    full = subset == list(PROBLEMSET)
    data = json.loads(path.read_text())
    codes = {str(i): data[i] for i in subset}
    tag = name + ("" if args.clock == "wall" else "-cpu")
    out_dir = args.out or ROOT / "results" / (f"enamel-{tag}" if full else f"enamel-{tag}-subset")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        sample_file = Path(tmp) / f"{name}.json"
        sample_file.write_text(json.dumps(codes))  # ENAMEL's {index: [programs]} format
        t0 = time.perf_counter()
        metrics = score_file(sample_file, "enamel", out_dir=out_dir, model=name)
        wall = time.perf_counter() - t0
    got = {f"{c}@1": metrics["curves"][f"{c}@k"][0] for c in ("eff", "pass")}
    result = {
        "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "setup": {"samples": name, "problems": len(subset), "full_set": full, "protocol": vars(Protocol(clock=args.clock)),
                  "run_folder": str(out_dir.relative_to(ROOT)) if out_dir.is_relative_to(ROOT) else str(out_dir),
                  "command": "python bench/bench_enamel.py " + " ".join(sys.argv[1:])},
        "wall_s": round(wall, 1),
        "figures": {k: {"value": round(v["value"], 4), "ci95": [round(v["lower"], 4), round(v["upper"], 4)]}
                    for k, v in got.items()},
    }
    published = PUBLISHED.get(name)
    if published:
        result["published"] = published
        result["within_tolerance"] = {k: abs(got[k]["value"] - v) <= TOLERANCE[k] for k, v in published.items()}
        if not full:
            result["note"] = "a subset: the published row is over all 142 problems, so this is indicative only"
    stem = "enamel" if tag == "humanevalplus-canonical" else f"enamel-{tag}"
    dest = ROOT / "bench" / "results" / (f"{stem}.json" if full else f"{stem}_subset.json")
    dest.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
