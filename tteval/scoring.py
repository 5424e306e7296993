"""`tteval score`: grade an external sample file (tteval, human-eval or evalplus format) against a task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tteval.errors import TtevalError
from tteval.grading import Grader
from tteval.metrics import compute_metrics
from tteval.results import write_json_atomic
from tteval.tasks import load_problems, load_task


def read_sample_file(path: Path, known_ids: set[str]) -> list[dict[str, Any]]:
    """Parse a JSONL of {task_id, completion|solution}; every problem is reported as `file:line: what`."""
    if not path.is_file():
        raise TtevalError(f"sample file not found: {path}")
    records = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TtevalError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start})") from None
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TtevalError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise TtevalError(f"{path}:{lineno}: expected a JSON object")
            if "task_id" not in rec:
                raise TtevalError(f"{path}:{lineno}: missing field 'task_id'")
            text = rec.get("completion", rec.get("solution"))
            if not isinstance(text, str):
                raise TtevalError(f"{path}:{lineno}: missing string field 'completion' (or 'solution')")
            task_id = str(rec["task_id"])
            if task_id not in known_ids:
                raise TtevalError(f"{path}:{lineno}: unknown task id '{task_id}' for this task")
            records.append({**rec, "task_id": task_id, "completion": text})
    if not records:
        raise TtevalError(f"{path}: no samples in file")
    return records


def score_file(
    path: Path, task_name: str, out_file: Path | None = None, tasks_dir: Path | None = None, workers: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Grade every sample, optionally write graded samples (+ metrics JSON beside them), return the metrics."""
    task = load_task(task_name, tasks_dir)
    problems = {p.task_id: p for p in load_problems(task)}
    records = read_sample_file(path, set(problems))
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_problem.setdefault(r["task_id"], []).append(r)
    ids = list(by_problem)
    grader = Grader(task, workers=workers)
    try:
        verdicts = grader.grade([problems[i] for i in ids], [[r["completion"] for r in by_problem[i]] for i in ids])
    finally:
        grader.close()
    graded = []
    for tid, vs in zip(ids, verdicts):
        for j, (r, v) in enumerate(zip(by_problem[tid], vs)):
            graded.append(
                {
                    **r,
                    "sample_index": r.get("sample_index", j),
                    "answer": v.answer,
                    "correct": v.correct,
                    "answer_class": v.answer_class,
                    "grading": v.detail,
                    "scores": r.get("scores") or {},
                }
            )
    metrics = compute_metrics(graded, task=task.name, seed=seed)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_file.with_suffix(out_file.suffix + ".tmp")
        tmp.write_text("".join(json.dumps(g) + "\n" for g in graded), encoding="utf-8")
        tmp.replace(out_file)
        write_json_atomic(out_file.with_suffix(".metrics.json"), metrics)
    return metrics
