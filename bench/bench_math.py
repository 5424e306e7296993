"""Math grading throughput: answers/s of MathGrader on a realistic candidate pool, with and without the verdict cache.

Pool: the 500 MATH-500 problems x 16 candidates, each candidate drawn (fixed seed) from four answers per problem:
the gold as written (45 %), an equivalent respelling (15 %), the next problem's answer (25 %) and an off-by-one or
another problem's answer (15 %). Measures grading against the gold and equivalence classes for voting, plus the
cost of the hang guard (a check that never finishes unguarded). Writes bench/results/math.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tteval.graders.math import MathGrader  # noqa: E402

CANDIDATES, SEED = 16, 0
OUT = ROOT / "bench" / "results" / "math.json"
HANGING_ANSWER = "100000000!"


def load_rows() -> list[dict]:
    for folder in (ROOT / "tasks" / "data", Path("/work/shared/datasets")):
        path = folder / "math500.jsonl"
        if path.is_file():
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    raise SystemExit("math500.jsonl not found")


def respell(gold: str) -> str:
    """An equivalent spelling of a gold answer, the way a model might write it."""
    if re.fullmatch(r"-?\d+", gold):
        return gold + ".0"
    if "\\frac" in gold:
        return gold.replace("\\frac", "\\dfrac")
    if " " in gold:
        return gold.replace(" ", "")
    return "{" + gold + "}"


def off_by_one(gold: str, fallback: str) -> str:
    return str(int(gold) + 1) if re.fullmatch(r"-?\d+", gold) else fallback


def make_pool(rows: list[dict]) -> list[tuple[list[str], str]]:
    rng = random.Random(SEED)
    pool = []
    for i, row in enumerate(rows):
        gold = row["answer"]
        choices = [gold, respell(gold), rows[(i + 1) % len(rows)]["answer"],
                   off_by_one(gold, rows[(i + 2) % len(rows)]["answer"])]  # fmt: skip
        pool.append((rng.choices(choices, weights=[45, 15, 25, 15], k=CANDIDATES), gold))
    return pool


def time_grading(pool, one_call: bool = False, **grader_args) -> dict:
    """Grade every candidate against its gold: one `grade` call per problem (as the runner does), or one in all."""
    with MathGrader(timeout_s=5.0, **grader_args) as grader:
        grader.grade([("1", "2.5")] * grader.workers)  # start and warm the workers outside the timed region
        start = time.perf_counter()
        if one_call:
            correct = sum(grader.grade([(c, gold) for cands, gold in pool for c in cands]))
        else:
            correct = sum(sum(grader.grade([(c, gold) for c in cands])) for cands, gold in pool)
        seconds = time.perf_counter() - start
        stats = grader.stats.as_dict()
    answers = sum(len(c) for c, _ in pool)
    settings = {**grader_args, "calls": "one for the pool" if one_call else "one per problem"}
    return {"settings": settings, "answers": answers, "seconds": round(seconds, 3),
            "answers_per_s": round(answers / seconds, 1), "correct": correct, "stats": stats}  # fmt: skip


def time_classes(pool, **grader_args) -> dict:
    with MathGrader(timeout_s=5.0, **grader_args) as grader:
        grader.grade([("1", "2.5")] * grader.workers)
        start = time.perf_counter()
        sizes = [len(set(grader.equivalence_classes(cands))) for cands, _ in pool]
        seconds = time.perf_counter() - start
        stats = grader.stats.as_dict()
    answers = sum(len(c) for c, _ in pool)
    return {"settings": grader_args, "answers": answers, "seconds": round(seconds, 3),
            "answers_per_s": round(answers / seconds, 1), "mean_classes_per_problem": round(sum(sizes) / len(sizes), 2),
            "stats": stats}  # fmt: skip


def time_guard(limit_s: float = 30.0, deadline_s: float = 5.0) -> dict:
    """How long the pathological check runs unguarded (capped at limit_s), and what the guard costs."""
    code = (
        "import logging; logging.disable(logging.WARNING)\n"
        "from math_verify import parse, verify\n"
        f"verify(parse('$3$', parsing_timeout=None), parse('${HANGING_ANSWER}$', parsing_timeout=None), "
        "timeout_seconds=None)\n"
    )
    start = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-c", code], timeout=limit_s, capture_output=True)
        unguarded = {"finished": True, "seconds": round(time.perf_counter() - start, 2)}
    except subprocess.TimeoutExpired:
        unguarded = {"finished": False, "seconds": f"> {limit_s}"}
    with MathGrader(timeout_s=deadline_s) as grader:
        grader.grade([("1", "2.5")])
        start = time.perf_counter()
        verdict = grader.check([(HANGING_ANSWER, "3")])[0]
        guarded_s = time.perf_counter() - start
        start = time.perf_counter()
        after = grader.grade([("\\frac{1}{2}", "0.5")])[0]
        next_s = time.perf_counter() - start
    return {"answer": HANGING_ANSWER, "unguarded": unguarded, "deadline_s": deadline_s,
            "guarded": {"verdict": verdict.correct, "status": verdict.status, "seconds": round(guarded_s, 2)},
            "next_check": {"correct": after, "seconds_incl_worker_restart": round(next_s, 2)}}  # fmt: skip


def main() -> None:
    load_before = os.getloadavg()[0]
    pool = make_pool(load_rows())
    distinct = [len(set(c)) for c, _ in pool]
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "math_verify": version("math-verify"), "sympy": version("sympy")},  # fmt: skip
        "pool": {"problems": len(pool), "candidates_per_problem": CANDIDATES,
                 "mean_distinct_answers_per_problem": round(sum(distinct) / len(distinct), 2)},  # fmt: skip
        "grade": [
            time_grading(pool, workers=1),
            time_grading(pool, workers=1, cache=False),
            time_grading(pool, workers=1, cache=False, shortcuts=False),
            time_grading(pool, workers=2, cache=False, shortcuts=False),
            time_grading(pool, one_call=True, workers=1, cache=False, shortcuts=False),
            time_grading(pool, one_call=True, workers=2, cache=False, shortcuts=False),
            time_grading(pool, one_call=True, workers=2),
        ],
        "equivalence_classes": [time_classes(pool, workers=1), time_classes(pool, workers=1, cache=False)],
        "hang_guard": time_guard(),
    }
    results["machine"]["load_average_1m_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
