"""`tteval score`: grade an external sample file (tteval, human-eval or evalplus format) against a task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tteval.errors import TtevalError
from tteval.jsonl import json_object
from tteval.grading import Grader
from tteval.metrics import compute_metrics
from tteval.results import write_json_atomic
from tteval.tasks import load_problems, load_task


def read_sample_file(path: Path, known_ids: set[str]) -> list[dict[str, Any]]:
    """Parse a JSONL of {task_id, completion|solution}; every problem is reported as `file:line: what`."""
    if path.is_dir():
        raise TtevalError(f"{path} is a folder, not a sample file (give its samples.jsonl)")
    if not path.is_file():
        raise TtevalError(f"sample file not found: {path}")
    records = []
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise TtevalError(f"cannot read sample file {path}: {exc.strerror or exc}") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte order mark, as some editors write
            if not raw.strip():
                continue
            rec = json_object(raw, f"{path}:{lineno}")
            if "task_id" not in rec:
                raise TtevalError(f"{path}:{lineno}: missing field 'task_id'")
            text = rec.get("completion", rec.get("solution"))
            if not isinstance(text, str):
                raise TtevalError(f"{path}:{lineno}: missing string field 'completion' (or 'solution')")
            task_id = str(rec["task_id"])
            if task_id not in known_ids:
                raise TtevalError(f"{path}:{lineno}: unknown task id '{task_id}' for this task")
            problem = _bad_optional_field(rec)
            if problem:
                raise TtevalError(f"{path}:{lineno}: {problem}")
            records.append({**rec, "task_id": task_id, "completion": text})
    if not records:
        raise TtevalError(f"{path}: no samples in file")
    return records


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _bad_optional_field(rec: dict[str, Any]) -> str | None:
    """What is wrong with the optional fields the metrics read (None when they are absent or well-typed)."""
    for name in ("sample_index", "num_tokens"):
        v = rec.get(name)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return f"field '{name}' must be a whole number >= 0, got {json.dumps(v)[:60]}"
    for name in ("logprob", "verifier_tokens"):
        v = rec.get(name)
        if v is not None and not _is_number(v):
            return f"field '{name}' must be a number, got {json.dumps(v)[:60]}"
    scores = rec.get("scores")
    if scores is not None and not (isinstance(scores, dict) and all(_is_number(v) for v in scores.values())):
        return f"field 'scores' must be an object of numbers (name -> score), got {json.dumps(scores)[:60]}"
    chains = rec.get("verifier_chain_scores")
    if chains is not None and not (isinstance(chains, list) and all(_is_number(v) for v in chains)):
        return f"field 'verifier_chain_scores' must be a list of numbers, got {json.dumps(chains)[:60]}"
    return None


def score_file(
    path: Path, task_name: str, out_file: Path | None = None, tasks_dir: Path | None = None, workers: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Grade every sample, optionally write graded samples (+ metrics JSON beside them), return the metrics."""
    if workers < 1:
        raise TtevalError(f"--workers must be at least 1, got {workers}")
    if out_file is not None and out_file.is_dir():
        raise TtevalError(f"--out {out_file} is a folder; give the graded samples file to write, e.g. graded.jsonl")
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
                    "sample_index": r["sample_index"] if r.get("sample_index") is not None else j,
                    "answer": v.answer,
                    "correct": v.correct,
                    "answer_class": v.answer_class,
                    "grading": v.detail,
                    "scores": r.get("scores") or {},
                }
            )
    metrics = compute_metrics(graded, task=task.name, seed=seed)
    if out_file is not None:
        tmp = out_file.with_suffix(out_file.suffix + ".tmp")
        try:
            out_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("".join(json.dumps(g) + "\n" for g in graded), encoding="utf-8")
            tmp.replace(out_file)
            write_json_atomic(out_file.with_suffix(".metrics.json"), metrics)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TtevalError(f"cannot write {out_file}: {exc.strerror or exc}") from None
    return metrics
