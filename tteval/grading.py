"""The oracle: turn a problem's completions into extracted answers, correctness and answer classes for voting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from tteval.tasks import Problem, Task


@dataclass
class Verdict:
    """What the gold check says of one completion; `answer_class` groups equivalent answers (-1: no answer)."""

    answer: str | None
    correct: bool
    answer_class: int = -1
    detail: dict[str, Any] = field(default_factory=dict)


class Grader:
    """Grades completions of one task: math by answer equivalence, code by unit tests in the sandbox."""

    def __init__(self, task: Task, workers: int = 2, math_timeout_s: float = 5.0, group_code: bool = True):
        self.task = task
        self.workers = workers
        self.group_code = group_code
        self._math = None
        if task.kind == "math":
            from tteval.verifiers.math import MathGrader

            self._math = MathGrader(timeout_s=math_timeout_s, workers=1)

    def grade(self, problems: Sequence[Problem], completions: Sequence[Sequence[str]]) -> list[list[Verdict]]:
        """Grade every problem's completions; code candidates of all problems share one worker pool."""
        if self.task.kind == "math":
            return [self._grade_math(p, c) for p, c in zip(problems, completions)]
        return self._grade_code(problems, completions)

    def _grade_math(self, problem: Problem, completions: Sequence[str]) -> list[Verdict]:
        from tteval.verifiers.math import extract_answer

        gold = self.task.gold(problem)
        answers = [extract_answer(c, style=self.task.extract_style) for c in completions]
        correct = self._math.grade([(a, gold) for a in answers])
        classes = self._math.equivalence_classes(answers)
        return [Verdict(a, bool(ok), int(k), {"gold": gold}) for a, ok, k in zip(answers, correct, classes)]

    def _grade_code(self, problems: Sequence[Problem], completions: Sequence[Sequence[str]]) -> list[list[Verdict]]:
        from tteval.verifiers.code import behaviour_signature, check_programs, default_limits, extract_code

        limits = default_limits()
        items, owners, codes = [], [], []
        for pi, (problem, comps) in enumerate(zip(problems, completions)):
            tests = self.task.tests(problem)
            for c in comps:
                code = extract_code(c)
                codes.append(code)
                items.append((self.task.program(problem, code), tests))
                owners.append(pi)
        verdicts = check_programs(items, limits, workers=self.workers)
        out: list[list[Verdict]] = [[] for _ in problems]
        signatures: dict[str, int] = {}
        for (program, tests), code, v, pi in zip(items, codes, verdicts, owners):
            if not code.strip():
                klass = -1
            elif self.group_code and len(completions[pi]) > 1:
                sig = f"{pi}:" + behaviour_signature(program, tests, limits)
                klass = signatures.setdefault(sig, len(signatures))
            else:
                klass = len(signatures)
                signatures[f"{pi}:#{klass}"] = klass
            detail = {"status": v.status, "detail": v.detail, "runtime_s": v.runtime_s, "time_limit_s": v.time_limit_s}
            out[pi].append(Verdict(code if code.strip() else None, bool(v.passed), klass, detail))
        return out

    def close(self) -> None:
        if self._math is not None:
            self._math.close()
