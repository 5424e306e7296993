"""Code-check hardening: hostile programs graded correct, reference throughput, and `extract_code` on hostile text.

(a) every attack of tests/attack_programs.py (issue 14's battery) through `check_program`: how many pass;
(b) the first N MBPP references with their tests through `check_programs` (2 workers): programs per second;
(c) `extract_code` on a fence followed by 100 KB / 1 MB of spaces and on 1 MB of near-fences.
`--label before` runs the same against another checkout (PYTHONPATH=/path/to/old/checkout); results are merged
into bench/results/attacks.json under the label.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from attack_programs import ATTACKS  # noqa: E402
from bench_sandbox import corpus  # noqa: E402

import tteval  # noqa: E402
from tteval.graders.code import check_program, check_programs, default_limits  # noqa: E402
from tteval.graders.code_extract import extract_code  # noqa: E402
from tteval.graders.sandbox import isolation_mode  # noqa: E402
from tteval.graders.sandbox_limits import Limits  # noqa: E402

OUT = HERE / "results" / "attacks.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--mbpp", type=int, default=200)
    parser.add_argument("--extract-max", type=int, default=2_000_000,
                        help="skip extract_code inputs longer than this (the old quadratic scanner needs hours on 1 MB)")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only (b), appended to <label>.throughput_rounds (alternate labels for an A/B)")
    args = parser.parse_args()
    if args.throughput_only:
        items = corpus("mbpp")[: args.mbpp]
        t0 = time.perf_counter()
        check_programs(items, default_limits(), workers=2)
        seconds = time.perf_counter() - t0
        merged = json.loads(OUT.read_text()) if OUT.is_file() else {}
        rounds = merged.setdefault(args.label, {}).setdefault("throughput_rounds", [])
        rounds.append({"programs": len(items), "ms_per_program_2_workers": round(1000 * seconds / len(items), 1),
                       "load_average_1m": round(os.getloadavg()[0], 2)})
        OUT.write_text(json.dumps(merged, indent=1) + "\n")
        print(rounds[-1])
        return
    limits = Limits(wall_s=8.0)
    graded_correct = []
    for name, (program, tests) in sorted(ATTACKS.items()):
        if check_program(program, tests, limits).passed:
            graded_correct.append(name)
    items = corpus("mbpp")[: args.mbpp]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    verdicts = check_programs(items, default_limits(), workers=2)
    seconds = time.perf_counter() - t0
    extract = {}
    for label, text in (("fence + 10 KB spaces", "```" + " " * 10_000 + "x y"),
                        ("fence + 100 KB spaces", "```" + " " * 100_000 + "x y"),
                        ("fence + 1 MB spaces", "```" + " " * 1_000_000 + "x y"),
                        ("1 MB of near-fences", ("```" + " \t" * 1000 + "!\n") * 500)):
        if len(text) > args.extract_max:
            extract[label] = "skipped"
            continue
        t = time.perf_counter()
        extract_code(text)
        extract[label] = round(time.perf_counter() - t, 4)
    result = {
        "tteval": str(Path(tteval.__file__).parent),
        "isolation": isolation_mode(),
        "attacks": len(ATTACKS),
        "attacks_graded_correct": len(graded_correct),
        "graded_correct": graded_correct,
        "mbpp_references": len(items),
        "mbpp_references_passed": sum(v.passed for v in verdicts),
        "mbpp_programs_per_s_2_workers": round(len(items) / seconds, 2),
        "ms_per_program_2_workers": round(1000 * seconds / len(items), 1),
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "extract_code_s": extract,
    }
    merged = json.loads(OUT.read_text()) if OUT.is_file() else {}
    merged[args.label] = {**result, **{k: v for k, v in merged.get(args.label, {}).items() if k == "throughput_rounds"}}
    OUT.write_text(json.dumps(merged, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
