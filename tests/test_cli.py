"""The `tteval` command end to end on the embedded CPU model, and one-line errors on bad input."""

import json
from pathlib import Path

import pytest
from helpers import GENRM_RUN, PF_RUN, small_run_args, tteval

def only_run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def check_run_files(run: Path, n: int, limit: int):
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete"
    assert meta["config"]["n"] == n and meta["backend"]["name"] == "llamacpp"
    assert meta["backend"]["model_params"] > 1e8  # llama.cpp counts the model's parameters, for FLOPs
    assert meta["usage"]["completion_tokens"] > 0 and meta["timings"]["generation_s"] > 0
    assert {"python", "numpy", "tteval"} <= set(meta["versions"])
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == n * limit
    for s in samples:
        assert {"task_id", "sample_index", "completion", "answer", "correct", "num_tokens", "logprob", "scores",
                "question", "prompt_sha256", "gold"} <= set(s)
        assert isinstance(s["correct"], bool) and s["num_tokens"] >= 1
    assert sorted({s["sample_index"] for s in samples}) == list(range(n))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_problems"] == limit and metrics["n"] == n
    for name in ("pass@k", "maj@k"):
        ks = [p["k"] for p in metrics["curves"][name]]
        assert ks == [k for k in (1, 2, 4, 8) if k <= n]
        for p in metrics["curves"][name]:
            assert 0 <= p["lower"] <= p["value"] <= p["upper"] <= 1 and p["lower"] < p["upper"]
    return samples, metrics


def test_run_gsm8k_end_to_end(tmp_path):
    r = tteval("run", "--task", "gsm8k", "--limit", "2", "-n", "2", "--max-tokens", "64", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "pass@k" in r.stdout and "maj@k" in r.stdout
    samples, _ = check_run_files(only_run_dir(tmp_path), n=2, limit=2)
    assert all(s["logprob"] < 0 for s in samples)


@pytest.mark.slow
def test_run_mbpp_end_to_end(tmp_path):
    r = tteval("run", "--task", "mbpp", "--limit", "2", "-n", "2", "--max-tokens", "96", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    samples, _ = check_run_files(only_run_dir(tmp_path), n=2, limit=2)
    assert all(s["grading"]["status"] in {"passed", "failed", "timeout", "crashed"} for s in samples)


def test_rerun_is_a_noop_resume(tmp_path, fake_backend):
    args = ("run", "--backend", fake_backend, "--task", "gsm8k", "--limit", "1", "-n", "2", "--max-tokens", "16",
            "--out", str(tmp_path))  # fmt: skip
    assert tteval(*args).returncode == 0
    run = only_run_dir(tmp_path)
    before = (run / "samples.jsonl").read_bytes()
    r = tteval(*args)
    assert r.returncode == 0 and "resuming" in r.stderr
    assert (run / "samples.jsonl").read_bytes() == before


def test_help_explains_every_command():
    for cmd in ("run", "score", "tasks", "leaderboard", "sweep", "report"):
        r = tteval(cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout and len(r.stdout) > 300


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--task", "nope"], "unknown task 'nope'"),
        (["run", "--backend", "tpu"], "'tpu' is not one of 'llamacpp', 'vllm', 'openai'"),
        (["run", "--model", "/no/such/model.gguf"], "model file not found"),
        (["run", "-n", "0"], "-n must be at least 1"),
        (["run", "--max-tokens", "-1"], "--max-tokens must be at least 1"),
        (["run", "--limit", "5000", "--task", "humaneval"], "beyond the dataset"),
        (["run", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "cannot reach"),
        (["run", "--backend", "openai"], "needs --base-url"),
        (["score", "/no/such.jsonl", "--task", "gsm8k"], "sample file not found"),
        (["run", "--resume", "/no/such/run"], "file not found"),
        (["run", "--verifier", "prm"], "--verifier prm needs --prm-model"),
        (["run", "--verifier", "prm", "--prm-model", "Qwen/Qwen2.5-Math-PRM-7B"], "use --backend vllm"),
        (["run", "--strategy", "pass-until", "--until-successes", "0"], "--until-successes must be at least 1"),
        (["run", "--strategy", "pass-until", "--round-size", "0"], "--round-size must be at least 1"),
        (["run", "--pf-iterations", "0"], "--pf-iterations must be at least 1"),
        (["run", "--strategy", "nope"], "'nope' is not one of 'sample', 'particle-filter', 'pass-until'"),
        (["run", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--max-concurrency", "0"],
         "--max-concurrency must be at least 1"),
        (["sweep", "--task", "gsm8k", "--budgets", "0"], "--budgets must be positive"),
        (["sweep", "--task", "gsm8k", "-s", "pass-until"], "unknown sweep strategy 'pass-until'"),
        (["run", "--limit", "0"], "--limit must be at least 1, got 0"),
        (["run", "-n", "-3"], "-n must be at least 1, got -3"),
        (["run", "--temperature", "-1"], "--temperature must be >= 0"),
        (["run", "--top-p", "0"], "--top-p must be in (0, 1]"),
        (["run", "--batch-problems", "0"], "--batch-problems must be at least 1"),
        (["run", "--grader-processes", "0"], "--grader-processes must be at least 1"),
        (["run", "--verifications", "0"], "--verifications must be at least 1"),
        (["run", "--strategy", "magic"], "Invalid value for '--strategy'"),
        (["run", "--verifier", "oracle"], "'oracle' is not one of 'none', 'genrm', 'prm'"),
        (["run", "--data-source", "ftp"], "'ftp' is not one of 'auto', 'local', 'hub'"),
        (["run", "--tasks-dir", "/no/such/dir"], "tasks directory not found: /no/such/dir"),
        (["run", "--model", "/"], "model file not found"),
        (["run", "--backend", "openai", "--base-url", "127.0.0.1:8000", "--model", "m"], "must start with http://"),
        (["run", "--backend", "openai", "--base-url", "http://no-such-host.invalid/v1", "--model", "m"], "cannot reach"),
        (["run", "-n", "many"], "valid integer"),
        (["run", "--no-such-flag"], "No such option: --no-such-flag"),
        (["score", "/", "--task", "gsm8k"], "is a folder, not a sample file"),
        (["leaderboard", "/no/such/dir"], "no such folder: /no/such/dir"),
        (["leaderboard", "--format", "xml", "/"], "unknown --format 'xml'"),
        (["report", "/no/such/dir"], "no such folder: /no/such/dir"),
        (["report", "--max-chars", "0"], "--max-chars must be at least 1"),
        (["tasks", "--tasks-dir", "/no/such/dir"], "tasks directory not found"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    r = tteval(*args, "--out", str(tmp_path)) if args[0] == "run" and "--resume" not in args else tteval(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert message in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1, r.stderr


def test_particle_filter_run_end_to_end(cpu_run):
    """The particle-filter run of tests/test_batch_invariance.py (2 problems, 2 particles, 2 steps of 6 tokens)."""
    run = cpu_run(*small_run_args(1, PF_RUN))
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and sum(s["selected"] for s in samples) == 2
    assert all(0 <= s["scores"]["prm"] <= 1 and s["problem_verifier_tokens"] > 0 for s in samples)
    curves = json.loads((run / "metrics.json").read_text())["curves"]
    assert set(curves) == {"pf@k", "pf-vote@k"} and curves["pf@k"][0]["k"] == 2


def test_genrm_verifier_run_reports_the_sv_grid(cpu_run):
    """The GenRM run of tests/test_batch_invariance.py (2 problems, 2 samples, 2 verification chains each)."""
    run = cpu_run(*small_run_args(1, GENRM_RUN))
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert all(len(s["verifier_chain_scores"]) == 2 and 0 <= s["scores"]["genrm"] <= 1 for s in samples)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"genrm@k[V=1]", "genrm@k[V=2]", "bon@k[genrm]"} <= set(metrics["curves"])
    assert metrics["compute"]["verifications"] == 2 and metrics["compute"]["lambda"] > 0
    point = metrics["curves"]["genrm@k[V=2]"][-1]
    assert point["compute"] == pytest.approx(2 * (1 + metrics["compute"]["lambda"] * 2))
