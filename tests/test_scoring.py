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
    metrics = score_file(write_jsonl(tmp_path / "s.jsonl", rows), "humaneval", out_file=out)
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    # eff@k from the sandbox runtimes: a reference solution runs about as fast as the reference (e near 1, T = 2 T*)
    assert all(g["grading"]["reference_runtime_s"] > 0 for g in graded)
    eff = {p["k"]: p["value"] for p in metrics["curves"]["eff@k"]}
    assert set(eff) == {1, 2} and 0.2 < eff[1] <= eff[2] < 2.0
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
        (b"", "no samples in file"),
        (b'{"task_id": "gsm8k/0", "completion": "1"}\n' + b"[" * 100_000 + b"\n", "s.jsonl:2: malformed JSON (nested too deeply)"),
        (b'{"task_id": "gsm8k/0", "completion": "1"}\n{"task_id": "gsm8k/0", "comp', "s.jsonl:2: malformed JSON"),
        ('{"task_id": "gsm8k/0", "completion": "1"}\n'.encode("utf-16"), "s.jsonl:1: not valid UTF-8"),
        (b'{"task_id": "gsm8k/0", "completion": 7}\n', "s.jsonl:1: missing string field 'completion'"),
        (b'{"task_id": "gsm8k/0", "completion": "1", "scores": {"prm": "high"}}\n', "s.jsonl:1: field 'scores'"),
        (b'{"task_id": "gsm8k/0", "completion": "1", "num_tokens": "many"}\n', "s.jsonl:1: field 'num_tokens'"),
        (b'{"task_id": "gsm8k/0", "completion": "1", "logprob": "-1"}\n', "s.jsonl:1: field 'logprob'"),
        (b'{"task_id": "gsm8k/0", "completion": "1", "sample_index": -1}\n', "s.jsonl:1: field 'sample_index'"),
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


def test_score_accepts_a_byte_order_mark_and_hostile_completions(tmp_path):
    rows = [{"task_id": "gsm8k/0", "completion": "\ud800\x00\x1b[31m \\boxed{18}"},
            {"task_id": "gsm8k/0", "completion": "9" * 1_000_000, "sample_index": None}]  # fmt: skip
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    out = tmp_path / "g.jsonl"
    metrics = score_file(path, "gsm8k", out_file=out)
    graded = [json.loads(line) for line in out.read_text(encoding="ascii").splitlines()]
    assert [g["correct"] for g in graded] == [True, False]
    assert [g["sample_index"] for g in graded] == [0, 1]
    assert graded[0]["completion"] == rows[0]["completion"] and graded[1]["grading"]["status"] == "too_long"
    assert metrics["num_problems"] == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "gsm8k", "--workers", "0"], "--workers must be at least 1"),
        (["--task", "gsm8k", "--out", "{tmp}"], "is a folder"),
    ],
)
def test_bad_score_options_give_one_line(tmp_path, args, message):
    path = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "gsm8k/0", "completion": "1"}])
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = subprocess.run([sys.executable, "-m", "tteval.cli", "score", str(path), *args], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_score_on_a_folder_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tteval.cli", "score", str(tmp_path), "--task", "gsm8k"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "is a folder, not a sample file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
