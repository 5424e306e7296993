"""lm-eval habits in `tteval run`: --limit (all, N, or a fraction), and what a run folder records. The runs go
to the real scripted OpenAI-compatible server of tests/helpers.py (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_one_line_error, chat_completion, run_dirs, tteval

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
    from tteval.config import RunConfig

    # the id of `tteval run --limit 4` (the old default) as tteval 0.1 computed it: old run folders still resume
    # there (tteval.runner.run_folder looks for it; tests/test_config.py resumes such a folder)
    assert RunConfig.of(limit=4).legacy_run_id() == "gsm8k_smollm2_sample_n4_" + _old_digest()


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
    for panel in ("Task", "Sampling", "Backend", "Strategy", "Verifier", "Grading", "Particle filtering",
                  "Output"):
        assert f"─ {panel} ─" in r.stdout, panel
    for choices in ("<llamacpp|vllm|openai|MODULE:FACTORY>", "<sample|particle-filter|pass-until>", "<none|genrm|prm>",
                    "<auto|local|hub>", "<last|min|prod|mean|model>", "<hybrid|logprob|binary|normalized>"):  # fmt: skip
        assert choices in r.stdout, choices
    assert "--grader-processes" in r.stdout and "--workers" not in r.stdout  # the former name is hidden


def test_workers_is_the_hidden_former_name_of_grader_processes():
    from tteval.options import to_config

    assert to_config({"workers": 2, "workers__old": 5}).execution.workers == 5  # `--workers 5`
    assert to_config({"workers": 3, "workers__old": None}).execution.workers == 3  # `--grader-processes 3`
    assert to_config({"workers": 3, "workers__old": 3}).execution.workers == 3  # both, agreeing
    with pytest.raises(TtevalError, match="--grader-processes and --workers .* give different values"):
        to_config({"workers": 3, "workers__old": 4})
    assert_one_line_error(tteval("score", "x.jsonl", "--task", "gsm8k", "--grader-processes", "3", "--workers", "4"),
                          "give --grader-processes only")  # fmt: skip


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
    assert_one_line_error(tteval("run", "--resume", str(tmp_path / "nope"), "-n", "8"), "file not found")  # no warning
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


# ------------------------------------------------------------------------------ --model-args, --gen-kwargs
def test_parse_kv_types_values_as_lm_eval():
    from tteval.passthrough import parse_kv

    assert parse_kv("dtype=bfloat16,max_model_len=4096,gpu_memory_utilization=0.8,trust_remote_code=True,revision=none",
                    "--model-args") == {"dtype": "bfloat16", "max_model_len": 4096, "gpu_memory_utilization": 0.8,
                                        "trust_remote_code": True, "revision": None}  # fmt: skip
    assert parse_kv(None, "--model-args") is None
    for bad, message in (("a", "key=value pairs"), ("=1", "key=value pairs"), ("a=1,a=2", "gives 'a' twice")):
        with pytest.raises(TtevalError, match=message):
            parse_kv(bad, "--gen-kwargs")


def test_gen_kwargs_reach_the_server_and_are_recorded(server, tiny, tmp_path):
    bodies = []

    def answer(question, body):
        bodies.append(body)
        return boxed_two(question, body)

    srv = server(answer)
    r = tiny_run(srv.url, tiny, tmp_path / "out", "--limit", "1", "--gen-kwargs", "top_k=20,min_p=0.05")
    assert r.returncode == 0, r.stderr
    assert bodies and all(b["top_k"] == 20 and b["min_p"] == 0.05 for b in bodies)
    (run,) = run_dirs(tmp_path / "out")
    config = json.loads((run / "run.json").read_text())["config"]
    assert config["gen_kwargs"] == {"top_k": 20, "min_p": 0.05} and config["identity"]["sampling"]["gen_kwargs"] == config["gen_kwargs"]
    assert tiny_run(srv.url, tiny, tmp_path / "out", "--limit", "1").returncode == 0
    assert len(run_dirs(tmp_path / "out")) == 2  # other sampling settings: another run
    assert "top_k" not in bodies[-1]


@pytest.mark.parametrize("args,message", [
    (["--gen-kwargs", "top_kk=3"], "--gen-kwargs: not openai sampling parameters: top_kk"),
    (["--gen-kwargs", "temperature=0"], "--gen-kwargs: temperature is set by --temperature"),
    (["--model-args", "dtype=half"], "--model-args: the openai backend starts no engine"),
])  # fmt: skip
def test_unknown_passthrough_keys_are_one_line(server, tiny, tmp_path, args, message):
    srv = server(boxed_two)
    assert_one_line_error(tiny_run(srv.url, tiny, tmp_path / "out", *args), message)
    assert srv.asked == [] and run_dirs(tmp_path / "out") == []


def test_llamacpp_model_args_reach_the_engine(tmp_path):
    bad = tteval("run", "--model-args", "n_ctxx=512", "--out", str(tmp_path))
    assert_one_line_error(bad, "--model-args: not llamacpp engine arguments: n_ctxx")
    assert_one_line_error(tteval("run", "--gen-kwargs", "top_k=5", "--out", str(tmp_path)),
                          "--gen-kwargs: the llamacpp backend samples with temperature and top-p only")  # fmt: skip
    # the engine's constructor gets them: its own check answers for a context too small
    assert_one_line_error(tteval("run", "--limit", "1", "--model-args", "n_ctx=8", "--out", str(tmp_path)),
                          "n_ctx must be at least 16 tokens, got 8")  # fmt: skip
    assert run_dirs(tmp_path) == []
    r = tteval("run", "--limit", "1", "-n", "1", "--max-tokens", "4", "--model-args", "n_ctx=512,max_parallel=1",
               "--out", str(tmp_path), "--no-cache")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (run,) = run_dirs(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    assert meta["config"]["model_args"] == {"n_ctx": 512, "max_parallel": 1} and meta["status"] == "complete"


@pytest.mark.vllm
def test_vllm_passthrough_is_checked_against_vllms_own_classes():
    pytest.importorskip("vllm")
    from tteval.backends.base import Request
    from tteval.backends.vllm import to_sampling_params
    from tteval.passthrough import check_passthrough

    check_passthrough("--model-args", "vllm", {"dtype": "bfloat16", "max_model_len": 4096, "trust_remote_code": True, "revision": "main"})
    check_passthrough("--gen-kwargs", "vllm", {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    with pytest.raises(TtevalError, match="not vllm engine arguments: dtyp"):
        check_passthrough("--model-args", "vllm", {"dtyp": "half"})
    with pytest.raises(TtevalError, match="not vllm sampling parameters: top_kk"):
        check_passthrough("--gen-kwargs", "vllm", {"top_kk": 1})
    params = to_sampling_params(Request(prompt="x", n=2, seed=1, extra=(("min_p", 0.05), ("top_k", 20))))
    assert params.top_k == 20 and params.min_p == 0.05


# ------------------------------------------------------------------------------ particle filtering's token cap
def test_worst_case_budget_counts_candidates_steps_and_chains():
    from tteval.config import RunConfig
    from tteval.runner import worst_case_tokens

    plain = worst_case_tokens(RunConfig.of(n=4, max_tokens=256), 10)
    assert (plain.policy, plain.verifier) == (10 * 4 * 256, 0)
    assert plain.line() == "worst case: 10,240 generated tokens (10 problems x 4 candidates x 256 tokens)"
    genrm = worst_case_tokens(RunConfig.of(n=4, max_tokens=256, verifier="genrm", verifications=2, verifier_max_tokens=64), 10)
    assert genrm.verifier == 10 * 4 * 2 * 65
    pf = worst_case_tokens(RunConfig.of(strategy="particle-filter", n=2, max_tokens=96, pf_step_tokens=128, pf_max_steps=40,
                                     pf_iterations=3, verifier_max_tokens=16), 1)  # fmt: skip
    assert (pf.candidates, pf.per_candidate, pf.policy) == (6, 40 * 96, 6 * 40 * 96)  # 40 steps of at most 96 per slot
    assert pf.verifier == 6 * 40 * 1 * 17  # a verification after each of at most 40 steps
    short = worst_case_tokens(RunConfig.of(strategy="particle-filter", n=2, max_tokens=5000, pf_step_tokens=10,
                                        pf_max_steps=3), 1)  # fmt: skip
    assert short.per_candidate == 30  # steps x step tokens, when below --max-tokens


def test_particle_filter_identity_changes_so_old_folders_do_not_mix():
    from tteval.config import RunConfig

    assert "pf_particle_max_tokens" in RunConfig.of(strategy="particle-filter").legacy_identity()
    assert "pf_particle_max_tokens" not in RunConfig().legacy_identity()


@pytest.mark.parametrize("iterations", [1, 2])
def test_max_tokens_caps_each_particle_and_the_printed_budget_bounds_what_is_spent(tmp_path, fake_backend, iterations):
    r = tteval("run", "--backend", fake_backend, "--limit", "20", "-n", "2", "--strategy", "particle-filter",
               "--max-tokens", "20", "--pf-step-tokens", "12", "--pf-max-steps", "6", "--verifier-max-tokens", "4",
               "--pf-iterations", str(iterations), "--out", str(tmp_path), "--no-cache")  # fmt: skip
    assert r.returncode == 0, r.stderr
    # per problem 2 x T slots x 6 steps x min(12, 20) tokens, and 2 x T x 6 verifications x (4 + 1) tokens
    slots = 2 * iterations
    policy, verifier = 20 * slots * 6 * 12, 20 * slots * 6 * 5
    line = (f"worst case: {policy:,} generated tokens (20 problems x {slots} particles x 6 steps x 12 tokens)"
            f" + {verifier:,} verifier tokens")  # fmt: skip
    assert line in r.stderr, r.stderr
    (run,) = run_dirs(tmp_path)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 40
    assert all(1 <= s["num_tokens"] <= 20 for s in samples), [s["num_tokens"] for s in samples]
    per_problem = {s["task_id"]: s for s in samples}
    spent = {t: s["problem_policy_tokens"] for t, s in per_problem.items()}
    assert max(spent.values()) <= policy // 20, spent
    assert sum(s["problem_verifier_tokens"] for s in per_problem.values()) <= verifier
    if iterations == 1:  # not N x --max-tokens: a resampled particle keeps its parent's tokens, the dropped one's spent
        assert max(spent.values()) > 2 * 20, spent


def test_a_particles_default_cap_is_the_authors_steps_times_step_tokens(tmp_path):
    from tteval.config import RunConfig
    from tteval.runner import worst_case_tokens

    pf = RunConfig.of(strategy="particle-filter")
    assert pf.token_cap() == 40 * 128 and worst_case_tokens(pf, 1).per_candidate == 40 * 128
    assert RunConfig().token_cap() == 256 and RunConfig.of(max_tokens=96, strategy="particle-filter").token_cap() == 96
    assert pf.legacy_identity()["pf_particle_max_tokens"] == 40 * 128
    assert pf.identity()["sampling"]["max_tokens"] == 40 * 128
    # the default and the same cap given by hand are one run; a sampling run's id is as before
    assert pf.run_id() == RunConfig.of(strategy="particle-filter", max_tokens=40 * 128).run_id()
    assert RunConfig().run_id() == RunConfig.of(max_tokens=256).run_id()
    r = tteval("run", "--limit", "1", "-n", "2", "--strategy", "particle-filter", "--pf-step-tokens", "3",
               "--pf-max-steps", "2", "--verifier-max-tokens", "2", "--out", str(tmp_path), "--no-cache", timeout=1800)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "worst case: 12 generated tokens (1 problems x 2 particles x 2 steps x 3 tokens) + 12 verifier tokens" in r.stderr
    (run,) = run_dirs(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    assert meta["config"]["max_tokens"] == 6 and meta["config"]["identity"]["sampling"]["max_tokens"] == 6


def test_cache_keys_of_requests_without_gen_kwargs_are_unchanged():
    import hashlib
    from dataclasses import asdict

    from tteval.backends.base import Request
    from tteval.cache import request_key

    req = Request(messages=(("user", "hi"),), n=2, seed=1)
    before = {k: v for k, v in asdict(req).items() if k != "extra"}  # the key as tteval 0.1 computed it
    old = hashlib.sha256(json.dumps({"backend": "vllm", "model": "m", **before}, sort_keys=True, default=list).encode())
    assert request_key("vllm", "m", req) == old.hexdigest()
    assert request_key("vllm", "m", Request(messages=(("user", "hi"),), n=2, seed=1, extra=(("top_k", 5),))) != old.hexdigest()


# ------------------------------------------------------------------------------ --prompt-format raw
def test_raw_prompt_format_sends_plain_text_on_the_cpu_model(tmp_path):
    import hashlib

    from tteval.config import RunConfig
    from tteval.tasks import load_problems, load_task

    assert "prompt_format" not in RunConfig().legacy_identity()  # chat, the default: old run ids unchanged
    assert "prompt_format" not in RunConfig().identity() and RunConfig.of(prompt_format="raw").identity()["prompt_format"] == "raw"
    task = load_task("gsm8k")
    (p,) = load_problems(task, 1)
    raw = task.raw_prompt(p)
    assert raw.startswith(task.messages(p)[0][1] + "\n\n") and raw.endswith(p.row["question"] + "\n\n")
    runs = {}
    for fmt in ("chat", "raw"):
        r = tteval("run", "--limit", "1", "-n", "1", "--max-tokens", "4", "--prompt-format", fmt,
                   "--out", str(tmp_path / fmt), "--no-cache", timeout=900)  # fmt: skip
        assert r.returncode == 0, r.stderr
        (run,) = run_dirs(tmp_path / fmt)
        (runs[fmt],) = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert runs["raw"]["prompt_sha256"] == hashlib.sha256(raw.encode()).hexdigest()
    assert runs["raw"]["prompt_sha256"] != runs["chat"]["prompt_sha256"]
    assert runs["raw"]["prompt_tokens"] < runs["chat"]["prompt_tokens"]  # no chat-template tokens around it
    assert_one_line_error(tteval("run", "--prompt-format", "base"), "'base' is not one of 'chat', 'raw'")


def test_piped_output_is_whole_lines_and_brackets_are_data():
    """`tteval tasks > file` and `tteval leaderboard > file`: no wrapping at 80 columns, no markup eaten."""
    r = tteval("tasks")
    assert r.returncode == 0, r.stderr
    assert "openai/gsm8k [test]" in r.stdout  # rich would have read "[test]" as a style tag
    gsm8k = [line for line in r.stdout.splitlines() if "gsm8k" in line]
    assert len(gsm8k) == 1 and "gsm8k_test.jsonl" in gsm8k[0] and "MIT" in gsm8k[0]  # one row, one line
    root = Path(__file__).resolve().parent.parent / "results" / "example-genrm-gpqa"
    run_id = json.loads((root / "run" / "run.json").read_text())["run_id"]
    assert len(run_id) > 40
    r = tteval("leaderboard", str(root))
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if run_id in line]  # the whole id on one line
    assert rows and all(len(line) > 80 for line in rows)
