"""The oracle: turn a problem's completions into extracted answers, correctness and answer classes for voting."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from tteval.errors import TtevalError
from tteval.tasks import Problem, Task

DEFAULT_MATH_TIMEOUT_S = 5.0  # per math-verify check; `TTEVAL_MATH_TIMEOUT_S` overrides it


@dataclass
class Verdict:
    """What the gold check says of one completion; `answer_class` groups equivalent answers (-1: no answer)."""

    answer: str | None
    correct: bool
    answer_class: int = -1
    detail: dict[str, Any] = field(default_factory=dict)


def math_timeout_from_env() -> float:
    """The math check deadline in seconds: `$TTEVAL_MATH_TIMEOUT_S`, else 5 s."""
    raw = os.environ.get("TTEVAL_MATH_TIMEOUT_S", "").strip()
    if not raw:
        return DEFAULT_MATH_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise TtevalError(f"TTEVAL_MATH_TIMEOUT_S must be a positive number of seconds, got {raw!r}")
    return value


class Grader:
    """Grades completions of one task: math by answer equivalence, code by unit tests in the sandbox."""

    def __init__(self, task: Task, workers: int = 2, math_timeout_s: float | None = None, group_code: bool = True):
        if math_timeout_s is None:
            math_timeout_s = math_timeout_from_env()
        self.task = task
        self.workers = workers
        self.group_code = group_code
        self._math = None
        self._limits: dict = {}
        self._reference: dict[str, tuple[float, float] | None] = {}  # task id -> the reference's (CPU s, wall s)
        if task.kind == "math":
            from tteval.graders.math import MathGrader

            self._math = MathGrader(timeout_s=math_timeout_s, workers=1)

    def start(self) -> None:
        """Start the math workers now (not at the first check), so their imports overlap the engine's loading."""
        if self._math is not None:
            self._math.start()

    def grade(self, problems: Sequence[Problem], completions: Sequence[Sequence[str]]) -> list[list[Verdict]]:
        """Grade every problem's completions; code candidates of all problems share one worker pool."""
        if self.task.kind == "math":
            return [self._grade_math(p, c) for p, c in zip(problems, completions)]
        return self._grade_code(problems, completions)

    def _grade_math(self, problem: Problem, completions: Sequence[str]) -> list[Verdict]:
        from tteval.graders.math import extract_answer

        gold = self.task.gold(problem)
        answers = [extract_answer(c, style=self.task.extract_style) for c in completions]
        checks = self._math.check([(a, gold) for a in answers])
        classes = self._math.equivalence_classes(answers)
        return [
            Verdict(a, bool(c.correct), int(k), {"gold": gold, "status": c.status})
            for a, c, k in zip(answers, checks, classes)
        ]

    def _grade_code(self, problems: Sequence[Problem], completions: Sequence[Sequence[str]]) -> list[list[Verdict]]:
        from tteval.graders.code import behaviour_signatures, check_programs
        from tteval.graders.code_extract import extract_code
        from tteval.graders.efficiency import is_enamel_task

        if is_enamel_task(self.task):
            return self._grade_enamel(problems, [[extract_code(c) for c in comps] for comps in completions])
        limits = self._code_limits(problems)
        items, owners, codes, item_limits = [], [], [], []
        for pi, (problem, comps) in enumerate(zip(problems, completions)):
            tests = self.task.tests(problem)
            for c in comps:
                code = extract_code(c)
                codes.append(code)
                items.append((self.task.program(problem, code), tests))
                owners.append(pi)
                item_limits.append(limits[pi])
        verdicts = check_programs(items, item_limits, workers=self.workers)
        grouped = [self.group_code and len(completions[pi]) > 1 and code.strip() for pi, code in zip(owners, codes)]
        to_sign = [i for i, g in enumerate(grouped) if g]
        signs = dict(zip(to_sign, behaviour_signatures([items[i] for i in to_sign], [item_limits[i] for i in to_sign],
                                                       workers=self.workers)))  # fmt: skip
        out: list[list[Verdict]] = [[] for _ in problems]
        classes: list[dict[str, int]] = [{} for _ in problems]
        for i, (code, v, pi) in enumerate(zip(codes, verdicts, owners)):
            sig = signs.get(i)
            if not code.strip() or (sig is not None and sig.startswith("!")):
                klass = -1  # no code, or a program that crashes on the inputs: no vote
            else:
                klass = classes[pi].setdefault(sig if sig is not None else f"#{i}", len(classes[pi]))
            ref = self._reference.get(problems[pi].task_id)
            detail = {"status": v.status, "detail": v.detail, "runtime_s": v.runtime_s, "cpu_s": v.cpu_s,
                      "time_limit_s": v.time_limit_s, "wall_limit_s": v.wall_limit_s, "limit_fired": v.limit_fired,
                      "reruns": v.reruns, "reference_runtime_s": ref[1] if ref else None,
                      "reference_cpu_s": ref[0] if ref else None}  # fmt: skip
            out[pi].append(Verdict(code if code.strip() else None, bool(v.passed), klass, detail))
        return out

    def _grade_enamel(self, problems: Sequence[Problem], codes: Sequence[Sequence[str]]) -> list[list[Verdict]]:
        """ENAMEL's protocol (generated inputs, timed levels, the re-timed reference): correctness and the efficiency
        record eff@k is computed from; passing programs vote by identical text."""
        from tteval.graders.efficiency import grade_problems

        out = []
        for programs, graded in zip(codes, grade_problems(problems, codes)):
            ids: dict[str, int] = {}
            out.append([Verdict(c if c.strip() else None, g["passed"],
                                ids.setdefault(c.strip(), len(ids)) if g["passed"] and c.strip() else -1, g["detail"])
                        for c, g in zip(programs, graded)])  # fmt: skip
        return out

    def _code_limits(self, problems: Sequence[Problem]) -> list:
        """Per-problem CPU-time limits calibrated from the reference solution's CPU time (evalplus-style), measured
        one sandbox at a time, three times where it could matter (references above 0.25 CPU s)."""
        from tteval.graders.code import (DEFAULT_TIME_FACTOR, DEFAULT_TIME_FLOOR_S, calibrate_time_limit,
                                           default_limits, reference_times)

        base = default_limits()
        todo = [p for p in problems if p.task_id not in self._limits]
        if todo:
            refs = [(self.task.program(p, self.task.reference(p)), self.task.tests(p)) for p in todo]
            times = reference_times(refs, base, repeats=3, workers=1,
                                    repeat_above_s=DEFAULT_TIME_FLOOR_S / DEFAULT_TIME_FACTOR / 4)
            for p, t in zip(todo, times):
                self._limits[p.task_id] = base.replace(cpu_s=calibrate_time_limit(t[0] if t else None))
                self._reference[p.task_id] = t  # (CPU s, wall s); the wall time is T* of eff@k (None if it failed)
        return [self._limits[p.task_id] for p in problems]

    def close(self) -> None:
        if self._math is not None:
            self._math.close()
