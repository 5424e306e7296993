"""A run's problems for the drill-down: samples grouped by problem, votes per answer class, and each selector's
pick (majority, top score, the particle filter's selection, coverage); and which runs of a task answer a problem
right, to find where runs disagree. Data only: `tteval.drilldown` renders it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence


def read_samples(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The sample records of a samples.jsonl and the number of unreadable lines (skipped)."""
    records, bad = [], 0
    if not path.is_file():
        return records, bad
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except (ValueError, RecursionError):
                bad += 1
                continue
            if isinstance(r, dict) and "task_id" in r:
                records.append(r)
            else:
                bad += 1
    return records, bad


def class_key(s: Mapping[str, Any]) -> Any:
    """The voting class of a candidate: its answer_class (>= 0), else its answer text; None for no answer."""
    cls = s.get("answer_class")
    if isinstance(cls, (int, float)) and not isinstance(cls, bool):
        return ("class", int(cls)) if cls >= 0 else None
    ans = s.get("answer")
    return None if ans in (None, "") else ("answer", str(ans))


@dataclass
class ProblemView:
    """One problem's candidates with the vote count of each one's answer class."""

    task_id: str
    candidates: list[dict[str, Any]]
    votes: dict[Any, int]
    majority: Any
    num_correct: int

    @property
    def question(self) -> str | None:
        """The problem's text, as its samples recorded it (tteval >= 0.2)."""
        return next((str(s["question"]) for s in self.candidates if s.get("question") is not None), None)

    @property
    def gold(self) -> str | None:
        """The gold answer: the samples' `gold` field, else a math grading's `gold`."""
        for s in self.candidates:
            grading = s.get("grading") if isinstance(s.get("grading"), Mapping) else {}
            for value in (s.get("gold"), grading.get("gold")):
                if value is not None:
                    return str(value)
        return None

    def picks(self) -> dict[str, bool]:
        """Whether each selector's pick is correct: the majority vote, the top candidate of each score (and the
        particle filter's selection), and coverage (any candidate correct)."""
        out: dict[str, bool] = {}
        if self.majority is not None:
            out["maj"] = representative(self, self.majority)[1] is True
        else:
            out["maj"] = False
        names = sorted({k for s in self.candidates if isinstance(s.get("scores"), Mapping) for k in s["scores"]})
        for name in names:
            scored = [s for s in self.candidates if finite(s.get("scores", {}).get(name))]
            if scored:
                best = max(scored, key=lambda s: s["scores"][name])  # the first of equal scores
                out[f"best {name}"] = best.get("correct") is True
        selected = [s for s in self.candidates if s.get("selected")]
        if selected:
            out["selected"] = selected[0].get("correct") is True
        out["any"] = self.num_correct > 0
        return out


def problem_views(records: Sequence[Mapping[str, Any]]) -> list[ProblemView]:
    """Group candidates by problem (sorted by task id, candidates by sample index) and count votes per class."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r["task_id"]), []).append(dict(r))
    views = []
    for tid in sorted(groups):
        cands = sorted(groups[tid], key=lambda s: s.get("sample_index") if isinstance(s.get("sample_index"), int) else 0)
        votes: dict[Any, int] = {}
        for s in cands:
            key = class_key(s)
            if key is not None:
                votes[key] = votes.get(key, 0) + 1
        majority = max(votes, key=lambda k: votes[k]) if votes else None
        views.append(ProblemView(tid, cands, votes, majority, sum(1 for s in cands if s.get("correct") is True)))
    return views


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def representative(p: ProblemView, key: Any) -> tuple[str, Any]:
    """(answer text, correct) of the first candidate in a vote class."""
    for s in p.candidates:
        if class_key(s) == key:
            return str(s.get("answer")), s.get("correct")
    return "", None


def load_views(folder: Path) -> tuple[list[ProblemView], int]:
    """A run folder's problems (candidates grouped, votes counted) and its number of unreadable sample lines."""
    records, bad = read_samples(Path(folder) / "samples.jsonl")
    return problem_views(records), bad


def run_answer(p: ProblemView) -> bool:
    """Whether a run's answer to a problem is right: the particle filter's selection, else the majority vote."""
    picks = p.picks()
    return picks["selected"] if "selected" in picks else picks["maj"]


def cross_run_answers(
    runs: Mapping[int, tuple[str, Sequence[ProblemView]]], max_problems: int
) -> dict[int, dict[str, dict[int, tuple[bool, int]]]]:
    """For each run: task id -> {run index: (that run's answer right, the problem's place in its drill-down)} over
    the runs on the same task, so a problem where one run is right and another wrong can be found and linked."""
    by_task: dict[str, dict[str, dict[int, tuple[bool, int]]]] = {}
    for run, (task, views) in runs.items():
        for i, p in enumerate(views[:max_problems]):
            by_task.setdefault(task, {}).setdefault(p.task_id, {})[run] = (run_answer(p), i)
    return {run: by_task.get(task, {}) for run, (task, _) in runs.items()}
