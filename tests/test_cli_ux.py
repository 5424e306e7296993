"""lm-eval habits in `tteval run`: --limit (all, N, or a fraction), and what a run folder records. The runs go
to the real scripted OpenAI-compatible server of test_robustness (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_robustness import assert_one_line_error, chat_completion, run_dirs, tteval

from tteval.errors import TtevalError
from tteval.tasks import limit_count, parse_limit

TINY_TASK = """name: tiny
kind: math
source: {local: tiny.jsonl}
prompt: {system: "Answer in \\\\boxed{{}}.", user: "{question}"}
math: {gold: "{answer}"}
"""
TINY_ROWS = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]


def boxed_two(question: str, body: dict):
    """Every candidate answers 2 (right for the 1 + 1 problem only)."""
    return 200, chat_completion(["so \\boxed{2}"] * body["n"]), {}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A five-problem math task in a tasks folder."""
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "tiny.yaml").write_text(TINY_TASK)
    (d / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TINY_ROWS))
    return d


def tiny_run(url: str, tasks: Path, out: Path, *more: str):
    return tteval("run", "--backend", "openai", "--base-url", url, "--model", "x", "--task", "tiny", "--tasks-dir",
                  str(tasks), "-n", "2", "--out", str(out), "--no-cache", *more)  # fmt: skip


def problems_of(run: Path) -> list[str]:
    return sorted({json.loads(line)["task_id"] for line in (run / "samples.jsonl").read_text().splitlines()})


@pytest.mark.parametrize("text,value", [(None, None), ("all", None), ("3", 3), ("0.5", 0.5), ("1e-1", 0.1)])
def test_parse_limit_reads_all_a_count_or_a_fraction(text, value):
    assert parse_limit(text) == value and type(parse_limit(text)) is type(value)


@pytest.mark.parametrize("text", ["1.5", "0.0", "-0.5", "half", "nan", "inf"])
def test_parse_limit_refuses_what_is_neither(text):
    with pytest.raises(TtevalError, match="^--limit must be"):
        parse_limit(text)


def test_limit_count_rounds_a_fraction_up_as_lm_eval():
    assert [limit_count(None, 5), limit_count(2, 5), limit_count(0.5, 5), limit_count(0.01, 5)] == [5, 2, 3, 1]


def test_run_defaults_to_the_whole_task_and_takes_a_fraction(server, tiny, tmp_path):
    srv = server(boxed_two)
    r = tiny_run(srv.url, tiny, tmp_path / "all")
    assert r.returncode == 0, r.stderr
    (run,) = run_dirs(tmp_path / "all")
    assert problems_of(run) == [f"tiny/{i}" for i in range(5)]
    assert json.loads((run / "run.json").read_text())["config"]["limit"] is None
    r = tiny_run(srv.url, tiny, tmp_path / "half", "--limit", "0.5")
    assert r.returncode == 0, r.stderr
    (run,) = run_dirs(tmp_path / "half")
    assert problems_of(run) == ["tiny/0", "tiny/1", "tiny/2"]  # ceil(0.5 x 5)
    assert json.loads((run / "metrics.json").read_text())["num_problems"] == 3
    assert json.loads((run / "run.json").read_text())["config"]["limit"] == 0.5


@pytest.mark.parametrize("limit,message", [("1.5", "--limit must be a whole number of problems or a fraction in (0, 1)"),
                                           ("0", "--limit must be at least 1, got 0"),
                                           ("six", "--limit must be a number of problems or a fraction")])  # fmt: skip
def test_bad_limit_is_one_line(server, tiny, tmp_path, limit, message):
    srv = server(boxed_two)
    assert_one_line_error(tiny_run(srv.url, tiny, tmp_path / "out", "--limit", limit), message)
    assert srv.asked == []


def test_an_old_run_id_is_unchanged_by_the_new_default():
    from tteval.runner import RunConfig

    # the id of `tteval run --limit 4` (the old default) as tteval 0.1 computed it: old run folders still resume
    assert RunConfig(limit=4).run_id() == "gsm8k_smollm2_sample_n4_" + _old_digest()


def _old_digest() -> str:
    import hashlib

    old = {"task": "gsm8k", "model": "smollm2", "backend": "llamacpp", "strategy": "sample", "n": 4, "limit": 4,
           "max_tokens": 256, "temperature": 0.7, "top_p": 1.0, "seed": 0, "base_url": None, "data_source": "auto",
           "verifier": "none", "verifications": 1, "verifier_max_tokens": 128, "pf_step_tokens": 128,
           "pf_max_steps": 40, "pf_softmax_temp": 1.0, "tensor_parallel": 1}  # fmt: skip
    return hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:8]


# ------------------------------------------------------------------------------ --version, help panels, --resume
def test_version_and_python_dash_m():
    import subprocess
    import sys

    from tteval import __version__

    for cmd in (["tteval"], [sys.executable, "-m", "tteval"]):
        exe = cmd if cmd[0] != "tteval" else [str(Path(sys.executable).parent / "tteval")]
        r = subprocess.run([*exe, "--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == f"tteval {__version__}", r.stderr
    r = subprocess.run([sys.executable, "-m", "tteval", "tasks"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "gsm8k" in r.stdout


def test_run_help_has_panels_and_real_choices():
    r = tteval("run", "--help")
    assert r.returncode == 0
    for panel in ("Task", "Sampling", "Backend", "Strategy", "Verifier", "Particle filtering", "Output"):
        assert f"─ {panel} ─" in r.stdout, panel
    for choices in ("<llamacpp|vllm|openai>", "<sample|particle-filter|pass-until>", "<none|genrm|prm>",
                    "<auto|local|hub>", "<last|min|prod|mean|model>", "<hybrid|logprob|binary|normalized>"):  # fmt: skip
        assert choices in r.stdout, choices


def test_resume_names_the_flags_it_ignores(server, tiny, tmp_path):
    srv = server(boxed_two)
    assert tiny_run(srv.url, tiny, tmp_path / "out", "--limit", "2").returncode == 0
    (run,) = run_dirs(tmp_path / "out")
    before = (run / "samples.jsonl").read_bytes()
    r = tteval("run", "--resume", str(run), "-n", "8", "--max-tokens", "999", "--no-cache")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: --resume runs with the config recorded in {run / 'run.json'}; ignored: -n, --max-tokens"]
    assert (run / "samples.jsonl").read_bytes() == before
    r = tteval("run", "--resume", str(run), "--no-cache")  # nothing else given: nothing to warn about
    assert r.returncode == 0 and "warning" not in r.stderr


# ------------------------------------------------------------------------------ --tasks a,b
def test_tasks_list_runs_one_folder_per_task_on_one_engine(server, tiny, tmp_path):
    (tiny / "tiny2.yaml").write_text(TINY_TASK.replace("name: tiny", "name: tiny2"))
    (tiny / "tiny2.jsonl").write_text((tiny / "tiny.jsonl").read_text())
    srv = server(boxed_two)
    r = tteval("run", "--backend", "openai", "--base-url", srv.url, "--model", "x", "--tasks", "tiny,tiny2",
               "--tasks-dir", str(tiny), "-n", "2", "--limit", "2", "--out", str(tmp_path / "out"), "--no-cache")  # fmt: skip
    assert r.returncode == 0, r.stderr
    runs = run_dirs(tmp_path / "out")
    metas = [json.loads((d / "run.json").read_text()) for d in runs]
    assert sorted(m["config"]["task"] for m in metas) == ["tiny", "tiny2"]
    assert all(m["status"] == "complete" for m in metas)
    assert len({tuple(m["backend"]["engines"]) for m in metas}) == 1  # one loaded backend served both tasks
    assert r.stdout.count("results:") == 2 and "tiny · x" in r.stdout and "tiny2 · x" in r.stdout
    assert len(srv.asked) == 4  # 2 problems x 2 tasks, one request each


# ------------------------------------------------------------------------------ samples.jsonl explains itself
def test_samples_record_question_prompt_hash_and_gold(server, tiny, tmp_path):
    import hashlib

    srv = server(boxed_two)
    assert tiny_run(srv.url, tiny, tmp_path / "out", "--limit", "2").returncode == 0
    (run,) = run_dirs(tmp_path / "out")
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    for s in samples:
        i = int(s["task_id"].split("/")[1])
        assert s["question"] == f"What is {i} + {i}?" and s["gold"] == str(2 * i)
        chat = [["system", "Answer in \\boxed{}."], ["user", s["question"]]]
        assert s["prompt_sha256"] == hashlib.sha256(json.dumps(chat).encode()).hexdigest()
        assert s["correct"] == (s["gold"] == "2")  # the server always answers 2


def test_code_samples_record_the_reference_solution_as_gold():
    from tteval.tasks import load_problems, load_task

    task = load_task("mbpp")
    (p,) = load_problems(task, 1)
    about = task.provenance(p)
    assert about["gold"] == p.row["code"] and about["question"] in task.messages(p)[-1][1]
    assert len(about["prompt_sha256"]) == 64
